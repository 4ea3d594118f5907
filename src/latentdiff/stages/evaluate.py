"""`latentdiff evaluate --model M --data DIR`: honest numbers with their protocol.

`--model` may be a pipeline folder (or hub id), a CLIP folder or a VAE folder; what it is decides what is
measured (see `latentdiff.evaluation.suite`). Writes, under `--out`: metrics.json (every number and the
protocol that produced it), report.md (tables, the samples grid, plots), the generated images (PNG with
their infotext) and the resolved config. Same inputs (model, data, options, device) -> same numbers.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from latentdiff import __version__, limits
from latentdiff.config import EvaluateConfig
from latentdiff.data.prepared import open_prepared
from latentdiff.errors import UserError
from latentdiff.folder_kinds import RUN_PIPELINE_DIRNAME, folder_kind, is_clip_folder, run_text_encoder_clip
from latentdiff.hashing import file_sha256, folder_hash
from latentdiff.model_source import BUNDLED_MODELS
from latentdiff.options import run_stage, save_config

# torch, diffusers and the evaluation code are imported inside the functions that use them: a wrong option
# is answered before their ~9 s of imports (the CLI imports this module only to run `evaluate`).

DESCRIPTION = ("Measure a pipeline, CLIP or VAE folder on a prepared dataset's test split: fd_lite0 with its noise "
               "floor, prompt fidelity, CLIP score, attributes, retrieval, reconstructions; writes metrics.json + report.md.")
SAMPLES_DIRNAME = "samples"
MIN_RETRIEVAL_IMAGES = 2


# ------------------------------------------------------------------------------------ validation


def detect_model_kind(model: str) -> tuple[str, str]:
    """("pipeline" | "clip" | "vae", the folder or hub id), or one sentence saying what the folder lacks."""
    if not model:
        raise UserError("No model given; pass --model with a pipeline, CLIP or VAE folder "
                        "(e.g. the `pipeline`, `clip` or `vae` folder written by `latentdiff train`).")
    path = Path(model).expanduser()
    if not path.exists() and model in BUNDLED_MODELS:  # `--model shapes`: its folder, so its clip/ is found
        path = BUNDLED_MODELS[model]
    if not path.exists():
        return "pipeline", model  # a hub id, or a typo: model_source says which in one sentence
    kind = folder_kind(path)
    if kind == "run":
        return "pipeline", str((path / RUN_PIPELINE_DIRNAME).resolve())
    if kind in ("pipeline", "clip", "vae"):
        return kind, str(path.resolve())
    raise UserError(f"--model {model} is not a pipeline folder (model_index.json), a CLIP folder (config.json of a "
                    f"CLIPModel) or a VAE folder (config.json of an AutoencoderKL); pass one written by `latentdiff train`.")


def _require_weights(folder: Path, what: str) -> None:
    if not any(folder.glob("*.safetensors")):
        raise UserError(f"The {what} folder {folder} has no .safetensors weights; pass a complete folder written by "
                        f"`latentdiff train` (or save_pretrained).")


def check_config(cfg: EvaluateConfig) -> None:
    """Every check on the options that needs no model: fail before any long work."""
    from latentdiff.diffusion.schedulers import check_scheduler_name

    if not cfg.data:
        raise UserError("No dataset given; pass --data with a folder made by `latentdiff prepare-data`.")
    if cfg.num_samples < 0:
        raise UserError(f"--num-samples must be 0 (all images) or more (got {cfg.num_samples}).")
    if cfg.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1 (got {cfg.batch_size}).")
    if cfg.steps < 1:
        raise UserError(f"--steps must be at least 1 (got {cfg.steps}).")
    for value in [g for g in (cfg.guidance, *cfg.guidance_sweep) if g is not None]:  # None: the model's own
        if not math.isfinite(value) or value < 0:
            raise UserError(f"Guidance scales must be numbers >= 0 (got {value}); e.g. --guidance-sweep 1,3,5,7.")
    check_scheduler_name(cfg.scheduler)
    if cfg.inception_weights:
        from latentdiff.evaluation.fid import check_inception_weights

        check_inception_weights(cfg.inception_weights)


def find_clip(cfg: EvaluateConfig, pipeline_path: str | None) -> Path | None:
    """The CLIP folder to score with: --clip, else the run's CLIP beside the pipeline (`latentdiff train`'s layout:
    `clip-aligned` when it aligned the caption languages, else `clip`) or a `clip` folder inside it (the bundled
    default model's layout)."""
    if cfg.clip:
        path = Path(cfg.clip).expanduser()
        if not is_clip_folder(path):
            raise UserError(f"--clip {cfg.clip} is not a CLIP folder (no config.json of a CLIPModel); pass the folder "
                            f"written by `latentdiff train-clip`.")
        _require_weights(path, "CLIP")
        return path.resolve()
    if pipeline_path and Path(pipeline_path).is_dir():
        for candidate in (run_text_encoder_clip(Path(pipeline_path).parent), Path(pipeline_path) / "clip"):
            if is_clip_folder(candidate) and any(candidate.glob("*.safetensors")):
                return candidate.resolve()
    return None


# ------------------------------------------------------------------------------------ running


def _load_clip(path: Path, text_encoder=None):
    from latentdiff.evaluation.clip_score import text_tower_matches
    from latentdiff.evaluation.suite import Clip
    from latentdiff.models.clip import load_clip

    model, tokenizer, processor = load_clip(str(path))
    model.eval()
    matches = text_tower_matches(model, text_encoder) if text_encoder is not None else None
    return Clip(model, tokenizer, processor, str(path), matches)


def _protocol(cfg: EvaluateConfig, dataset, records, kind: str, model: str, model_hash: str, device) -> dict[str, Any]:
    import diffusers
    import torch
    import transformers

    from latentdiff.evaluation.features import FEATURE_EXTRACTOR_NAME, INPUT_SIZE, lite0_weights_path
    num_total = len(dataset.records(cfg.split))
    return {
        "model": model, "model_kind": kind, "model_hash": model_hash,
        "dataset": str(dataset.root), "dataset_source": dataset.manifest.get("source", "?"), "split": cfg.split,
        "images_in_split": num_total, "num_samples": len(records),
        "sample_selection": "the first num_samples images of the split in file order; each image's first caption",
        "image_size": dataset.image_size,
        "feature_extractor": FEATURE_EXTRACTOR_NAME,
        "feature_weights_sha256": file_sha256(lite0_weights_path()),
        "feature_input": f"bilinear resize to {INPUT_SIZE}x{INPUT_SIZE}, pixels (x*255-127)/128",
        "noise_floor": "fd_lite0 between the real images 0,2,4,... and 1,3,5,...",
        "device": str(device), "latentdiff": __version__, "torch": torch.__version__,
        "diffusers": diffusers.__version__, "transformers": transformers.__version__,
    }


def _evaluate_pipeline(cfg, model, clip_path: Path | None, real_ref, extractor, out_dir: Path,
                       payload: dict[str, Any]) -> str:
    from latentdiff.evaluation.fid import fid_unavailable_reason, inception_fid
    from latentdiff.evaluation.report import SWEEP_PLOT_FILENAME, plot_guidance_sweep
    from latentdiff.evaluation.suite import evaluate_generations, evaluate_real_against_captions, evaluate_vae, sweep_row
    from latentdiff.pipeline import TextToImage

    text_to_image = TextToImage.load(model, cfg.device, cfg.backend)  # threads: set by run() before any work
    text_encoder = text_to_image.pipe.text_encoder if text_to_image.backend == "torch" else None
    if text_encoder is None and any((text_to_image.source.path / "text_encoder").glob("*.safetensors")):
        # onnx / openvino sessions hold no torch weights: compare the CLIP folder with the source pipeline's
        from transformers import CLIPTextModel

        text_encoder = CLIPTextModel.from_pretrained(text_to_image.source.path / "text_encoder")
    clip = _load_clip(clip_path, text_encoder) if clip_path else None
    guidance = text_to_image.default_guidance if cfg.guidance is None else cfg.guidance
    num = len(real_ref.real.images)
    payload["protocol"].update({
        "model_hash": text_to_image.model_hash, "model_name": text_to_image.model_name, "backend": text_to_image.backend,
        "seeds": f"{cfg.seed}..{limits.image_seed(cfg.seed, num - 1)} (caption i uses seed+i, wrapping to 0 past "
                 f"{limits.MAX_SEED}; CPU generators)",
        "steps": cfg.steps, "scheduler": cfg.scheduler, "guidance": guidance,
        "generated_size": f"{text_to_image.default_size}x{text_to_image.default_size}", "batch_size": cfg.batch_size,
        "dtype": str(text_to_image.pipe.unet.dtype).replace("torch.", ""),
        "clip": clip.path if clip else None,
    })
    common = dict(seed=cfg.seed, steps=cfg.steps, scheduler=cfg.scheduler, batch_size=cfg.batch_size, clip=clip)
    generation, results = evaluate_generations(text_to_image, real_ref, extractor, guidance=guidance, **common)
    payload["generation"] = generation
    payload["real_reference"] = evaluate_real_against_captions(real_ref, clip)
    if clip is None:
        payload["notes"].append("No CLIP score or retrieval: no CLIP folder was found beside or inside the pipeline; pass "
                                "--clip with the folder the pipeline was trained with.")
    elif clip.matches_text_encoder is False:
        payload["notes"].append(f"The CLIP folder {clip.path} has a text tower that differs from the pipeline's text "
                                f"encoder, so the CLIP score is not measured with the pipeline's own CLIP.")
    if cfg.inception_weights:
        reason = fid_unavailable_reason()
        fid = {"note": reason} if reason else {
            "value": inception_fid([r.image for r in results], real_ref.real.images, Path(cfg.inception_weights)),
            "note": "torch-fidelity InceptionV3, pool3 2048-d"}
        generation["fid"] = fid
        if reason:
            payload["notes"].append(reason)
    samples = out_dir / SAMPLES_DIRNAME
    samples.mkdir(exist_ok=True)
    for i, result in enumerate(results):
        result.save(samples / f"{i:05d}-{result.seed}.png")
    if cfg.guidance_sweep:
        rows = []
        for swept in cfg.guidance_sweep:
            metrics = generation if swept == guidance else \
                evaluate_generations(text_to_image, real_ref, extractor, guidance=swept, **common)[0]
            rows.append(sweep_row(metrics))
        payload["guidance_sweep"] = rows
        plot_guidance_sweep(rows, out_dir / SWEEP_PLOT_FILENAME)
    if clip is not None:
        from latentdiff.evaluation.suite import evaluate_clip

        payload["clip"] = evaluate_clip(clip, real_ref.real)
    payload["vae"], _ = evaluate_vae(text_to_image.pipe.vae, real_ref, extractor)
    _write_grid(out_dir, [r.image for r in results], real_ref.real)
    return "generated (left) and the real image of the same caption (right)"


def _write_grid(out_dir: Path, left: list, real) -> None:
    from latentdiff.evaluation.report import GRID_FILENAME, samples_grid

    samples_grid(left, real.images, real.captions).save(out_dir / GRID_FILENAME)


def run(cfg: EvaluateConfig) -> dict[str, Any]:
    """Evaluate, write metrics.json, report.md, images and the resolved config; return the metrics."""
    from latentdiff.evaluation.frechet import check_enough_images

    from latentdiff.runtime import use_threads

    kind, model = detect_model_kind(cfg.model)
    check_config(cfg)
    # -1 is drawn here, once, and recorded, so the numbers can be made again (not one draw per caption)
    cfg = dataclasses.replace(cfg, seed=limits.resolve_seed(cfg.seed))
    use_threads(cfg.threads)  # before the feature extraction below loads the CPU (runtime.pick_num_threads)
    dataset = open_prepared(cfg.data)
    records = dataset.require_split(cfg.split)
    limited = 0 < cfg.num_samples < len(records)
    if limited:
        records = records[:cfg.num_samples]
    if kind in ("pipeline", "vae"):
        fix = ("raise --num-samples" if limited else
               f"prepare a dataset with more images so that its '{cfg.split}' split is larger")
        check_enough_images(len(records), f"images of the '{cfg.split}' split", halves=True, fix=fix)
    elif len(records) < MIN_RETRIEVAL_IMAGES:
        raise UserError(f"Retrieval needs at least {MIN_RETRIEVAL_IMAGES} images in the '{cfg.split}' split but "
                        f"{len(records)} are available; prepare a dataset with a larger split.")
    if kind == "clip":
        _require_weights(Path(model), "CLIP")
    if kind == "vae":
        _require_weights(Path(model), "VAE")
    clip_path = None
    if kind == "pipeline":
        from latentdiff.model_source import resolve_model

        source = resolve_model(model)  # a missing component or a bad hub id: one sentence, before any long work
        clip_path = find_clip(cfg, str(source.path))

    import torch

    from latentdiff.evaluation.features import Lite0Features
    from latentdiff.evaluation.report import write_metrics, write_report
    from latentdiff.evaluation.samples import load_real
    from latentdiff.evaluation.suite import evaluate_clip, evaluate_vae, real_reference
    from latentdiff.runtime import pick_device

    out_dir = Path(cfg.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    real = load_real(records)
    model_hash = folder_hash(Path(model)) if kind != "pipeline" else ""
    payload: dict[str, Any] = {"protocol": _protocol(cfg, dataset, records, kind, model, model_hash, device), "notes": []}
    grid_caption = None
    with torch.no_grad():
        if kind == "clip":
            payload["clip"] = evaluate_clip(_load_clip(Path(model)), real)
        else:
            extractor = Lite0Features(device)
            real_ref = real_reference(real, extractor)
            if kind == "vae":
                from latentdiff.models.vae import load_vae

                vae = load_vae(model).to(device).eval()
                payload["vae"], reconstructions = evaluate_vae(vae, real_ref, extractor)
                _write_grid(out_dir, reconstructions, real)
                grid_caption = "reconstruction (left) and the original (right)"
            else:
                grid_caption = _evaluate_pipeline(cfg, model, clip_path, real_ref, extractor, out_dir, payload)
    write_metrics(out_dir, payload)
    # a pipeline is called by its stored name ('shapes'), not its folder's ('pipeline' for every run)
    shown_name = payload.get("protocol", {}).get("model_name") or Path(model).name
    report = write_report(out_dir, payload, title=f"{shown_name} ({kind}) on {dataset.root.name}/{cfg.split}",
                          grid_caption=f"Each pair: {grid_caption}." if grid_caption else None)
    save_config(cfg, out_dir)
    print(f"Wrote {out_dir / 'metrics.json'} and {report}.")
    return payload


def main(argv: list[str] | None = None) -> int:
    return run_stage(run, EvaluateConfig, argv, "latentdiff evaluate", DESCRIPTION)
