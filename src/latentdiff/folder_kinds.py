"""What kind of model folder is this? The one place that reads a folder's marker files to tell:

    pipeline  a diffusers StableDiffusionPipeline folder (model_index.json)
    run       a `latentdiff train` run folder (its pipeline/ holds one)
    clip      a transformers CLIPModel folder (config.json with model_type "clip")
    vae, unet a diffusers AutoencoderKL / UNet2DConditionModel folder (config.json's _class_name)

Cheap (a file or two read, no torch), so commands can check their arguments before loading anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MODEL_INDEX = "model_index.json"
CONFIG = "config.json"
# a `latentdiff train` run folder: RUN/clip, RUN/vae, RUN/pipeline, and RUN/clip-aligned when the captions are in
# several languages (`align-text` of RUN/clip: the text encoder the pipeline was trained with)
RUN_CLIP_DIRNAME, RUN_VAE_DIRNAME, RUN_PIPELINE_DIRNAME = "clip", "vae", "pipeline"
RUN_ALIGNED_CLIP_DIRNAME = "clip-aligned"
DIFFUSERS_KINDS = {"AutoencoderKL": "vae", "UNet2DConditionModel": "unet"}


def read_config(folder: Path) -> dict[str, Any] | None:
    """The folder's config.json as a dict; None when there is none or it is not JSON."""
    try:
        config = json.loads((Path(folder) / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return config if isinstance(config, dict) else None


def diffusers_class(folder: Path) -> str | None:
    """The diffusers model class a component folder's config.json names (`_class_name`)."""
    return (read_config(folder) or {}).get("_class_name")


def is_pipeline_folder(path: Path) -> bool:
    return (Path(path) / MODEL_INDEX).is_file()


def is_clip_folder(path: Path) -> bool:
    return (read_config(path) or {}).get("model_type") == "clip"


def run_text_encoder_clip(run: Path) -> Path:
    """The CLIP folder of a run whose text tower its pipeline was trained with: RUN/clip-aligned if `train` aligned
    the caption languages, else RUN/clip."""
    aligned = Path(run) / RUN_ALIGNED_CLIP_DIRNAME
    return aligned if is_clip_folder(aligned) else Path(run) / RUN_CLIP_DIRNAME


def folder_kind(path: Path) -> str | None:
    """"pipeline", "run", "clip", "vae" or "unet"; None for anything else (a file, a missing path)."""
    path = Path(path)
    if not path.is_dir():
        return None
    if is_pipeline_folder(path):
        return "pipeline"
    if is_pipeline_folder(path / RUN_PIPELINE_DIRNAME):
        return "run"
    if is_clip_folder(path):
        return "clip"
    return DIFFUSERS_KINDS.get(diffusers_class(path))
