"""Put a `latentdiff train` run into the package as a bundled model (all bundled models together at most 60 MB,
so the package stays small).

    python scripts/bundle_model.py --run RUN [--pipeline DIR] [--vae DIR] [--clip DIR] [--guidance G] [--out src/latentdiff/default_model]
    python scripts/bundle_model.py --run RUN --out src/latentdiff/shapes_model     # `--model shapes`

RUN is a `latentdiff train` run folder (RUN/pipeline and RUN/clip). The output folder gets

    model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/   the pipeline
    latentdiff_model.json                                                its name, and with --guidance the
                                                                         scale generate/serve/evaluate use
                                                                         when none is asked for
    clip/                                                                the whole CLIPModel (text and
                                                                         vision towers, tokenizer, image
                                                                         processor) for CLIP score/retrieval

written by the libraries' own `save_pretrained` (so only the files a loader needs travel: no training
state, logs or checkpoints), then every floating-point tensor of every `*.safetensors` file is stored as
float16, which halves the package. The configs still say float32, so both loaders build float32 models
and cast the float16 tensors up while loading: diffusers casts to the dtype of the module it loads into
when no torch_dtype is given (`load_model_dict_into_meta`), and transformers' default dtype="auto" follows
the config's dtype. `latentdiff generate` and a plain `StableDiffusionPipeline.from_pretrained(dir)` thus
run the same float32 model with the same kernels: the same pixels for the same seed (checked at the end,
and by tests/unit/test_default_model.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "src" / "latentdiff" / "default_model"
MAX_BUNDLE_BYTES = 60 * 1024 * 1024  # at most 60 MB of weights and configs in the package, all bundled models together
STORED_DTYPE = torch.float16
# Each folder argument --KIND must be a folder of that latentdiff.folder_kinds kind; what such a folder is called.
WANTED_KINDS = {"pipeline": "a diffusers pipeline folder (model_index.json)", "vae": "an AutoencoderKL folder",
                "clip": "a CLIPModel folder"}


def to_float16(path: Path) -> None:
    """Rewrite one safetensors file with its floating-point tensors as float16 (metadata kept)."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path))
    for name, tensor in tensors.items():
        if tensor.is_floating_point():
            if tensor.abs().max() > torch.finfo(STORED_DTYPE).max:
                raise SystemExit(f"{path}: tensor {name} exceeds the float16 range; cannot bundle it as float16.")
            tensors[name] = tensor.to(STORED_DTYPE).contiguous()
    save_file(tensors, str(path), metadata=metadata)


def save_bundle(run: Path, out: Path, pipeline_dir: Path | None = None, vae_dir: Path | None = None,
                clip_dir: Path | None = None) -> None:
    from diffusers import AutoencoderKL, StableDiffusionPipeline

    from latentdiff.folder_kinds import RUN_CLIP_DIRNAME, RUN_PIPELINE_DIRNAME, folder_kind, run_text_encoder_clip
    from latentdiff.models.clip import load_clip
    from latentdiff.stages.train_unet import trained_its_text_encoder

    given = {"pipeline": pipeline_dir, "vae": vae_dir, "clip": clip_dir}
    for kind, folder in given.items():
        if folder is None:
            continue
        flag, described = f"--{kind}", WANTED_KINDS[kind]
        if not folder.is_dir():  # a folder given by hand: most likely a typo
            raise SystemExit(f"{folder} (given as {flag}) is not a folder: check the path.")
        found = folder_kind(folder)
        if found != kind:  # e.g. a run folder for --pipeline, an unfinished train-unet --out
            if found is None:
                raise SystemExit(f"{folder} (given as {flag}) is not {described}: check the path, or finish the "
                                 "training run that writes it.")
            hints = {("--pipeline", "run"): "a run folder goes to --run",
                     ("--vae", "pipeline"): f"its VAE is {folder / 'vae'}"}
            hint = hints.get((flag, found), "check the path")
            raise SystemExit(f"{folder} (given as {flag}) is a {found} folder, not {described}: {hint}.")
    pipeline_dir = pipeline_dir or run / RUN_PIPELINE_DIRNAME
    clip_dir = clip_dir or run_text_encoder_clip(run)
    for folder in (pipeline_dir, clip_dir):
        if not folder.is_dir():  # the run's own: the run has not got that far
            raise SystemExit(f"{folder} does not exist: finish `latentdiff train --out {run}` first.")
    # A VAE given apart (e.g. `train-vae --decoder-only` of the pipeline's own) must share its latent space.
    vae = {"vae": AutoencoderKL.from_pretrained(vae_dir)} if vae_dir else {}
    pipe = StableDiffusionPipeline.from_pretrained(pipeline_dir, **vae)
    clip_parts = load_clip(str(clip_dir))  # CLIPModel, tokenizer, image processor
    check_clip_matches_text_encoder(clip_parts[0], pipe.text_encoder, clip_dir,
                                    trained_with_unet=trained_its_text_encoder(pipeline_dir))
    pipe.save_pretrained(out, safe_serialization=True)
    for part in clip_parts:  # the bundle keeps its CLIP where a run does
        part.save_pretrained(out / RUN_CLIP_DIRNAME)
    for weights in sorted(out.rglob("*.safetensors")):
        to_float16(weights)


def check_clip_matches_text_encoder(clip, text_encoder, clip_dir: Path, trained_with_unet: bool = False) -> None:
    """The bundled CLIP serves CLIP score/retrieval for the prompts the U-Net was conditioned on, so its text tower
    must be the pipeline's text encoder (the one `train-unet --clip` was given). A pipeline that trained its text
    encoder with the U-Net (`--train-text-encoder`) has moved away from that tower, and the CLIP it started from,
    whose towers were trained together, stays the judge: then only the shapes must agree."""
    clip_weights = clip.text_model.state_dict()
    for name, tensor in text_encoder.state_dict().items():  # CLIPTextModel: "text_model." prefix or none
        other = clip_weights.get(name.removeprefix("text_model."))
        if other is None or other.shape != tensor.shape or (not trained_with_unet and not torch.equal(other, tensor)):
            raise SystemExit(f"{clip_dir}'s text tower is not the pipeline's text encoder ({name} differs): pass "
                             "--clip the CLIP folder that `train-unet --clip` used for this pipeline.")


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def check_same_images(folder: Path) -> None:
    """latentdiff's loader and plain diffusers must give identical pixels from the bundled folder."""
    import numpy as np
    from diffusers import StableDiffusionPipeline

    from latentdiff.pipeline import GenerationRequest, TextToImage

    ours = TextToImage.load(str(folder), "cpu", "torch")  # the default backend (onnx) may move a pixel by 1/255
    guidance = ours.default_guidance  # the bundle's own (latentdiff_model.json); diffusers would take 7.5
    image = ours.generate(GenerationRequest(["a red apple"], seed=0, steps=4, scheduler="ddim"))[0].image
    plain = StableDiffusionPipeline.from_pretrained(folder)
    dtypes = {name: next(getattr(plain, name).parameters()).dtype for name in ("unet", "vae", "text_encoder")}
    if set(dtypes.values()) != {torch.float32}:
        raise SystemExit(f"plain from_pretrained loaded {dtypes}, not float32 everywhere")
    from diffusers import DDIMScheduler

    plain.scheduler = DDIMScheduler.from_config(plain.scheduler.config)
    plain.set_progress_bar_config(disable=True)
    theirs = plain("a red apple", num_inference_steps=4, guidance_scale=guidance,
                   generator=torch.Generator("cpu").manual_seed(0)).images[0]
    difference = np.abs(np.asarray(image, dtype=np.int16) - np.asarray(theirs, dtype=np.int16)).max()
    print(f"latentdiff vs plain diffusers, same seed: max pixel difference {difference}")
    if difference > 0:  # same weights, kernels and noise (pipeline.py keeps diffusers' plain weights)
        raise SystemExit("latentdiff and plain diffusers disagree on the bundled model")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="the `latentdiff train` run folder (pipeline/ and clip/ inside)")
    parser.add_argument("--pipeline", default=None,
                        help="the pipeline folder to bundle (default: RUN/pipeline), e.g. a continued train-unet run")
    parser.add_argument("--vae", default=None,
                        help="a VAE folder to bundle instead of the pipeline's (one that shares its latent space, "
                             "e.g. from `latentdiff train-vae --init PIPELINE --decoder-only`)")
    parser.add_argument("--clip", default=None,
                        help="the CLIP folder to bundle, the one the pipeline's text encoder came from (default: "
                             "RUN/clip-aligned when `latentdiff train` aligned the caption languages, else RUN/clip), "
                             "e.g. the output of `latentdiff align-text`")
    parser.add_argument("--guidance", type=float, default=None,
                        help="the model's default guidance scale, the best of `latentdiff evaluate --guidance-sweep` "
                             "(default: none stored, so 7.5)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="the bundled model folder (replaced)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:  # replace the old bundle only once the new one is whole
        staged = Path(tmp) / out.name
        save_bundle(Path(args.run), staged, Path(args.pipeline) if args.pipeline else None,
                    Path(args.vae) if args.vae else None, Path(args.clip) if args.clip else None)
        from latentdiff.model_source import BUNDLED_MODELS, BUNDLED_NAMES, MODEL_INFO

        names = {folder.resolve(): BUNDLED_NAMES[key] for key, folder in BUNDLED_MODELS.items()}
        info = {"name": names.get(out.resolve(), out.name)}
        if args.guidance is not None:
            info["guidance"] = args.guidance
        (staged / MODEL_INFO).write_text(json.dumps(info, indent=2) + "\n")

        # The limit is the package's: a candidate bundled outside it (to measure before it replaces one) is not held to it.
        others = sum(folder_bytes(folder) for folder in BUNDLED_MODELS.values()
                     if folder.is_dir() and folder.resolve() != out.resolve())
        size = folder_bytes(staged) + others
        if out.resolve() in names and size > MAX_BUNDLE_BYTES:
            raise SystemExit(f"the bundled models would take {size / 2**20:.1f} MiB, over the "
                             f"{MAX_BUNDLE_BYTES / 2**20:.0f} MiB limit")
        if out.exists():
            shutil.rmtree(out)
        staged.rename(out)
    print(f"bundled {args.run} into {out}: {folder_bytes(out) / 2**20:.1f} MiB")
    for weights in sorted(out.rglob("*.safetensors")):
        print(f"  {weights.relative_to(out)}: {weights.stat().st_size / 2**20:.2f} MiB")
    check_same_images(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
