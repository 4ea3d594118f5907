"""What one generation is asked (`GenerationRequest`) and gives back (`GeneratedImage`), and how the images
are written: PNGs carrying AUTOMATIC1111's infotext, and grids. `latentdiff.pipeline.TextToImage` does the
generating; `generate`, `serve` and `evaluate` share these types."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from latentdiff import limits
from latentdiff.generation_defaults import DEFAULT_GENERATION_STEPS, DEFAULT_SCHEDULER
from latentdiff.infotext import PNG_TEXT_KEY, Infotext

DEFAULT_STRENGTH = 0.75  # img2img: AUTOMATIC1111's default denoising strength


@dataclass
class GenerationRequest:
    prompts: list[str]
    negative_prompt: str = ""
    num_images: int = 1  # per prompt
    seed: int | None = None  # image i (prompt-major order) gets limits.image_seed(seed, i); None or -1: random
    steps: int = DEFAULT_GENERATION_STEPS
    guidance: float | None = None  # None: the model's own (latentdiff_model.json), else DEFAULT_GUIDANCE
    scheduler: str = DEFAULT_SCHEDULER
    width: int | None = None  # None: the model's training size
    height: int | None = None
    # One explicit seed per image (then `seed` is ignored): lets the server batch requests whose images
    # keep their own seeds. len(image_seeds) == len(prompts) * num_images.
    image_seeds: list[int] | None = None
    # img2img: every image starts from this picture (resized to width x height), noised by `strength`
    # (0..1: how much of the schedule is run; 1 ignores the picture's content)
    init_image: Image.Image | None = None
    strength: float = DEFAULT_STRENGTH

    def prompts_and_seeds(self) -> list[tuple[str, int]]:
        """(prompt, seed) per image, prompt-major: all images of prompt 0, then prompt 1, ..."""
        prompts = [p for p in self.prompts for _ in range(self.num_images)]
        if self.image_seeds is not None:
            assert len(self.image_seeds) == len(prompts), "one seed per image"
            return list(zip(prompts, self.image_seeds))
        assert self.seed is not None, "check_request() first"
        return [(prompt, limits.image_seed(self.seed, i)) for i, prompt in enumerate(prompts)]


@dataclass
class GeneratedImage:
    image: Image.Image
    seed: int
    prompt: str
    info: Infotext = field(repr=False)

    @property
    def infotext(self) -> str:
        return self.info.format()

    def save(self, path: str | Path) -> Path:
        """PNG with the infotext in a `parameters` text chunk (as AUTOMATIC1111 writes it)."""
        return save_png(self.image, self.infotext, path)


def save_png(image: Image.Image, infotext: str, target: str | Path | BinaryIO) -> str | Path | BinaryIO:
    """Write a PNG carrying `infotext` to a path or a binary file object; returns `target`."""
    meta = PngInfo()
    meta.add_text(PNG_TEXT_KEY, infotext)
    image.save(target, format="PNG", pnginfo=meta)
    return target


def image_grid(images: list[Image.Image]) -> Image.Image:
    """Images tiled in a near-square grid, row-major (AUTOMATIC1111's default layout)."""
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    width, height = images[0].size
    grid = Image.new("RGB", (cols * width, rows * height), "black")
    for i, image in enumerate(images):
        grid.paste(image, ((i % cols) * width, (i // cols) * height))
    return grid
