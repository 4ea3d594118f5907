"""Tiny inputs of `latentdiff train-unet`, built directly with the project's builders (no training): a
prepared dataset of coloured shapes, a `tiny` CLIP folder (CLIPModel + CLIP tokenizer) and a `tiny`
AutoencoderKL folder. Random weights are enough to test the plumbing: caches, loss, export, errors."""

from __future__ import annotations

from pathlib import Path

import torch

from helpers.clip_data import write_tiny_clip_dataset
from latentdiff.presets import CLIP_PRESETS, VAE_PRESETS

IMAGE_SIZE = 64


def write_tiny_clip(out_dir: Path, captions: list[str], preset: str = "tiny", text_width: int | None = None,
                    seed: int = 0) -> Path:
    """A randomly initialised CLIP folder as `train-clip` writes it (model, tokenizer trained on `captions`,
    image processor); `text_width` overrides the preset's (to build a CLIP that does not fit a U-Net)."""
    import dataclasses

    from latentdiff.models.clip import build_clip, make_image_processor
    from latentdiff.models.tokenizer import MIN_VOCAB_SIZE, save_clip_tokenizer, train_clip_tokenizer

    clip_preset = CLIP_PRESETS[preset]
    if text_width is not None:
        clip_preset = dataclasses.replace(clip_preset, text_width=text_width)
    torch.manual_seed(seed)
    tokenizer = train_clip_tokenizer(captions, max(MIN_VOCAB_SIZE, min(clip_preset.vocab_size, 600)),
                                     clip_preset.max_text_tokens)
    model = build_clip(clip_preset, tokenizer)
    model.save_pretrained(out_dir)
    save_clip_tokenizer(tokenizer, out_dir)
    make_image_processor(clip_preset.image_size).save_pretrained(out_dir)
    return Path(out_dir)


def write_tiny_vae(out_dir: Path, latent_channels: int | None = None, seed: int = 0) -> Path:
    import dataclasses

    from latentdiff.models.vae import vae_from_preset

    preset = VAE_PRESETS["tiny"]
    if latent_channels is not None:
        preset = dataclasses.replace(preset, latent_channels=latent_channels)
    torch.manual_seed(seed)
    vae = vae_from_preset(preset)
    vae.save_pretrained(out_dir, safe_serialization=True)
    return Path(out_dir)


def write_unet_inputs(root: Path, num_train: int = 24, num_validation: int = 8) -> dict[str, Path]:
    """{"data", "clip", "vae"} folders under `root`."""
    root = Path(root)
    data = write_tiny_clip_dataset(root / "data", num_train=num_train, num_validation=num_validation,
                                   image_size=IMAGE_SIZE)
    captions = [f"a {c} {s}" for c in ("red", "green", "blue", "yellow") for s in ("square", "circle")]
    return {"data": data, "clip": write_tiny_clip(root / "clip", captions), "vae": write_tiny_vae(root / "vae")}


def tiny_unet_argv(paths: dict[str, Path], out: Path, *extra: str) -> list[str]:
    """Flags of a seconds-long `train-unet --preset tiny` run."""
    return ["--data", str(paths["data"]), "--clip", str(paths["clip"]), "--vae", str(paths["vae"]), "--out", str(out),
            "--preset", "tiny", "--max-steps", "4", "--batch-size", "4", "--validate-every", "0",
            "--checkpoint-every", "0", "--num-validation-prompts", "2", "--sample-steps", "2",
            "--validation-images", "4", *extra]
