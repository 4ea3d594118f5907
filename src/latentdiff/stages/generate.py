"""`latentdiff generate PROMPT... [--model M] [--out DIR]`: images from a pipeline, one PNG per image.

Each PNG carries its generation parameters in a `parameters` text chunk (AUTOMATIC1111's infotext);
with more than one image a grid PNG is written too. The seed of the first image is always printed (a
random one when --seed is not given), and the resolved config is saved next to the images.

After a run the model stays loaded in a background worker for --keep-alive seconds (latentdiff.keep_alive),
so the next call skips the ~9 s of imports and loading: only the denoising is left.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

from latentdiff import keep_alive, limits
from latentdiff.config import GenerateConfig
from latentdiff.errors import UserError
from latentdiff.limits import check_threads
from latentdiff.options import parse_config, run_reporting_errors, save_config

DESCRIPTION = "Generate images from text with a trained pipeline (one PNG per image, parameters embedded)."
GRID_PREFIX = "grid-"
WORKER_MODULE = "latentdiff.stages.generate_worker"  # the keep-alive worker's entry (python -m)
# PIL, torch and the pipeline are imported inside the functions that use them: a call answered by a warm
# worker (keep_alive.run_in_worker) must not pay their ~9 s of imports.
_NUMBERED = re.compile(r"^(\d{5})-")


def _next_index(out_dir: Path) -> int:
    """The number after the highest `NNNNN-*.png` already in `out_dir`, so reruns never overwrite."""
    numbers = [int(m.group(1)) for p in out_dir.glob("*.png") if (m := _NUMBERED.match(p.name))]
    return max(numbers, default=-1) + 1


def read_init_image(path: str):
    """The --init-image picture, fully read, or one sentence saying why it cannot be used."""
    from PIL import Image, UnidentifiedImageError


    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except FileNotFoundError:
        raise UserError(f"--init-image {path} does not exist; pass the path of a PNG or JPEG picture.") from None
    except (UnidentifiedImageError, OSError) as err:
        reason = getattr(err, "strerror", None) or "not a picture Pillow can read"
        raise UserError(f"--init-image {path} cannot be read ({reason}); pass a PNG or JPEG picture.") from None


def run(cfg: GenerateConfig, text_to_image=None) -> list[Path]:
    """Generate, write the PNGs (+ grid) and the resolved config; return the image paths written.
    `text_to_image`: an already loaded `TextToImage` for `cfg.model` (the keep-alive worker's), else loaded here."""
    from latentdiff.generation import GenerationRequest, image_grid, save_png
    from latentdiff.pipeline import TextToImage, progress_bar

    request = GenerationRequest(prompts=list(cfg.prompts), negative_prompt=cfg.negative_prompt,
                                num_images=cfg.num_images, seed=cfg.seed, steps=cfg.steps, guidance=cfg.guidance,
                                scheduler=cfg.scheduler, width=cfg.width, height=cfg.height)
    if not request.prompts:  # before loading anything

        raise UserError("No prompt given; pass at least one prompt, e.g. `latentdiff generate \"a red circle\"`.")
    if cfg.init_image is not None:  # before loading the model: a wrong path fails in a moment
        request.init_image, request.strength = read_init_image(cfg.init_image), cfg.strength
    if text_to_image is None:  # the thread count is picked before this process's own work loads the CPU
        from latentdiff.runtime import pick_num_threads

        text_to_image = TextToImage.load(cfg.model, cfg.device, cfg.backend, pick_num_threads(cfg.threads))
    request = text_to_image.check_request(request)  # fills seed and size; fails fast on bad input
    out_dir = Path(cfg.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    num_total = len(request.prompts) * request.num_images
    last_seed = limits.image_seed(request.seed, num_total - 1)  # past MAX_SEED the seeds wrap to 0, as uint32 does
    seeds = f"seed {request.seed}" + (f" (images use {request.seed}..{last_seed})" if num_total > 1 else "")
    print(f"Generating {num_total} image(s) of {request.width}x{request.height} with {text_to_image.model_name} "
          f"({text_to_image.backend}), "
          f"{request.scheduler}, {request.steps} steps, guidance {request.guidance:g}, {seeds}"
          + (f", from {cfg.init_image} at strength {cfg.strength:g}." if request.init_image is not None else "."))

    with progress_bar("denoising") as on_step:
        results = text_to_image.generate(request, progress_callback=on_step, batch_size=cfg.batch_size)

    first = _next_index(out_dir)
    paths = [result.save(out_dir / f"{first + i:05d}-{result.seed}.png") for i, result in enumerate(results)]
    if len(results) > 1:
        # the grid carries the first image's parameters, as AUTOMATIC1111's grids do
        grid = save_png(image_grid([r.image for r in results]), results[0].infotext,
                        out_dir / f"{GRID_PREFIX}{first:05d}-{request.seed}.png")
        paths_to_print = [*paths, grid]
    else:
        paths_to_print = paths
    resolved = dataclasses.replace(cfg, seed=request.seed, width=request.width, height=request.height,
                                   model=cfg.model or str(text_to_image.source.path))
    save_config(resolved, out_dir)
    for path in paths_to_print:
        print(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    """A warm keep-alive worker answers when one holds this model; else generate in process and leave one."""
    cfg = parse_config(GenerateConfig, sys.argv[1:] if argv is None else list(argv), keep_alive.PROG, DESCRIPTION)
    status = run_reporting_errors(lambda c: check_threads(c.threads), cfg, keep_alive.PROG)
    if status != 0:
        return status
    status = keep_alive.run_in_worker(cfg)
    if status is None:
        status = run_reporting_errors(run, cfg, keep_alive.PROG)
        if status == 0:  # the worker keeps the thread count this call used (torch is loaded by now)
            import torch

            keep_alive.start_worker(cfg, WORKER_MODULE, threads=torch.get_num_threads())
    return status
