"""The exported-pipeline folder: optimum's ORTStableDiffusionPipeline / OVStableDiffusionPipeline layout.

    DIR/model_index.json            the source pipeline's (diffusers names its components)
    DIR/latentdiff_export.json      format, the source model's hash, exporter versions (what the cache checks)
    DIR/text_encoder/model.onnx     input_ids (B, T) int64 -> last_hidden_state (B, T, D), pooler_output (B, D)
    DIR/unet/model.onnx             sample (B, C, h, w), timestep () float32, encoder_hidden_states (B, T, D)
                                    -> out_sample (B, C, h, w)
    DIR/vae_decoder/model.onnx      latent_sample (B, C, h, w) -> sample (B, 3, H, W)
    DIR/vae_encoder/model.onnx      sample (B, 3, H, W) -> latent_parameters (B, 2C, h, w) (img2img)
    DIR/{component}/config.json     the torch component's config (vae_* carry the VAE's)
    DIR/tokenizer/, DIR/scheduler/  copied as they are

OpenVINO folders hold `openvino_model.xml` + `.bin` instead of `model.onnx`. The input and output names
are optimum's (optimum/exporters/onnx/model_configs.py: UNetOnnxConfig, VaeDecoderOnnxConfig, ...), so
the folder reads as an optimum export, and onnxruntime.InferenceSession / openvino.Core load each file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

FORMATS = ("onnx", "openvino")
MODEL_FILES = {"onnx": "model.onnx", "openvino": "openvino_model.xml"}
EXPORT_INFO = "latentdiff_export.json"
# exported component -> the torch pipeline's component whose config.json it carries
COMPONENTS = {"text_encoder": "text_encoder", "unet": "unet", "vae_decoder": "vae", "vae_encoder": "vae"}
COPIED_FOLDERS = ("tokenizer", "scheduler")
# Bumped when what the exporter writes changes, so cached exports of an older exporter are redone.
EXPORTER_VERSION = 1


def model_file(folder: Path, component: str, fmt: str) -> Path:
    return Path(folder) / component / MODEL_FILES[fmt]


def read_export_info(folder: str | Path) -> dict | None:
    """The export's `latentdiff_export.json`, or None when `folder` is not a complete latentdiff export."""
    try:
        info = json.loads((Path(folder) / EXPORT_INFO).read_text())
    except (OSError, ValueError):
        return None
    fmt = info.get("format") if isinstance(info, dict) else None
    if fmt not in FORMATS or not all(model_file(folder, c, fmt).is_file() for c in COMPONENTS):
        return None
    return info


def exported_format(folder: str | Path) -> str | None:
    """'onnx' or 'openvino' when `folder` is a complete export, else None."""
    info = read_export_info(folder)
    return info["format"] if info else None


def cache_root() -> Path:
    """Where exports made on the fly live: $LATENTDIFF_CACHE_DIR, else $XDG_CACHE_HOME/latentdiff, else
    ~/.cache/latentdiff (the pipeline folder itself may be read-only, e.g. the bundled model)."""
    if os.environ.get("LATENTDIFF_CACHE_DIR"):
        return Path(os.environ["LATENTDIFF_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "latentdiff"


def cached_export_dir(pipeline_hash: str, fmt: str) -> Path:
    """One folder per pipeline (`hashing.pipeline_hash`: weights, configs, tokenizer, scheduler) and format:
    a retrained or reconfigured model gets a new export."""
    return cache_root() / "exports" / f"{pipeline_hash}-{fmt}"
