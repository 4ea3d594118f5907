"""AUTOMATIC1111's "infotext": the generation parameters written into every PNG (`parameters` chunk).

The form, which AUTOMATIC1111, ComfyUI, stable-diffusion.cpp, Civitai and image viewers read:

    a red circle on a white background
    Negative prompt: blurry
    Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64, Model hash: 0123456789, Model: shapes

The prompt may span several lines; the `Negative prompt:` line is left out when there is none; the last
line is `key: value` pairs separated by ", ", where a value holding ',', ':' or a newline is written as a
JSON string (AUTOMATIC1111's `quote`). The model hash is AUTOMATIC1111's short hash: the first 10 hex
digits of the SHA-256 of the weights (modules/sd_models.py: `shorthash = sha256[0:10]`); a diffusers
folder has several weight files, so we hash them in one fixed order (see `model_hash`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from latentdiff.diffusion.schedulers import a1111_sampler_name, scheduler_from_a1111

PNG_TEXT_KEY = "parameters"
NEGATIVE_PREFIX = "Negative prompt:"
# The weight files of a pipeline folder that define its images, in the order they are hashed.

# AUTOMATIC1111's parameter regex (modules/infotext_utils.py: re_param_code): `key: value` or
# `key: "json string"`, separated by commas.
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"^(\d+)x(\d+)$")
# AUTOMATIC1111 treats the last line as parameters only when it holds at least this many pairs.
_MIN_PARAMS_ON_LAST_LINE = 3


def _quote(value: Any) -> str:
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def _number(value: float) -> str:
    """7.0 -> '7', 7.5 -> '7.5' (AUTOMATIC1111 shows CFG scale as the user typed it); every digit a float
    keeps (repr's shortest form), so the image is made again from its infotext: 3.14159265 stays 3.14159265."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


@dataclass(frozen=True)
class Infotext:
    """The settings of one generated image, in the terms latentdiff uses."""

    prompt: str
    negative_prompt: str
    steps: int
    scheduler: str  # a latentdiff scheduler name ('euler-a'); written as the A1111 sampler name
    guidance: float
    seed: int
    width: int
    height: int
    model_hash: str = ""
    model_name: str = ""
    denoising_strength: float | None = None  # img2img only: how far the init image was noised (0..1)
    backend: str = ""  # what ran the networks: torch, onnx or openvino (latentdiff.backends)

    def format(self) -> str:
        return format_infotext(self)


def format_infotext(info: Infotext) -> str:
    params = {
        "Steps": info.steps,
        "Sampler": a1111_sampler_name(info.scheduler),
        "CFG scale": _number(info.guidance),
        "Seed": info.seed,
        "Size": f"{info.width}x{info.height}",
        "Model hash": info.model_hash or None,
        "Model": info.model_name or None,
        "Denoising strength": None if info.denoising_strength is None else _number(info.denoising_strength),
        "Backend": info.backend or None,
    }
    param_line = ", ".join(f"{key}: {_quote(value)}" for key, value in params.items() if value is not None)
    negative = f"\n{NEGATIVE_PREFIX} {info.negative_prompt}" if info.negative_prompt else ""
    return f"{info.prompt}{negative}\n{param_line}".strip()


def parse_infotext_fields(text: str) -> dict[str, str]:
    """AUTOMATIC1111's `parse_generation_parameters`, without its UI defaults: every field as a string,
    plus 'Prompt' and 'Negative prompt'."""
    *lines, last_line = text.strip().split("\n")
    if len(_PARAM.findall(last_line)) < _MIN_PARAMS_ON_LAST_LINE:
        lines.append(last_line)
        last_line = ""
    prompt, negative, in_negative = [], [], False
    for line in lines:
        line = line.strip()
        if line.startswith(NEGATIVE_PREFIX):
            in_negative = True
            line = line[len(NEGATIVE_PREFIX):].strip()
        (negative if in_negative else prompt).append(line)
    fields = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    for key, value in _PARAM.findall(last_line):
        fields[key] = _unquote(value)
    return fields


def parse_infotext(text: str) -> Infotext:
    """Read back an infotext written by latentdiff or AUTOMATIC1111 (unknown fields are ignored)."""
    fields = parse_infotext_fields(text)
    size = _SIZE.match(fields.get("Size", ""))
    sampler = fields.get("Sampler", "")
    return Infotext(
        prompt=fields["Prompt"],
        negative_prompt=fields["Negative prompt"],
        steps=int(fields.get("Steps", 0)),
        scheduler=scheduler_from_a1111(sampler, fields.get("Schedule type")) or sampler,
        guidance=float(fields.get("CFG scale", 0)),
        seed=int(fields.get("Seed", -1)),
        width=int(size.group(1)) if size else 0,
        height=int(size.group(2)) if size else 0,
        model_hash=fields.get("Model hash", ""),
        model_name=fields.get("Model", ""),
        denoising_strength=float(fields["Denoising strength"]) if "Denoising strength" in fields else None,
        backend=fields.get("Backend", ""),
    )
