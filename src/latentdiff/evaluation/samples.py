"""The images an evaluation compares: the real ones of a split, and one generated image per caption.

Generation goes through `latentdiff.pipeline.TextToImage`, the code `latentdiff generate` runs, so an
evaluated image is exactly what a user gets for the same prompt, seed, steps, scheduler and guidance:
caption i is generated with seed `seed + i`, one CPU generator per image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from latentdiff.data.prepared import ImageRecord
from latentdiff.pipeline import GenerationRequest, progress_bar


@dataclass
class RealSet:
    records: list[ImageRecord]
    images: list[Image.Image]  # RGB, the dataset's image_size

    @property
    def captions(self) -> list[str]:
        """The caption each image is generated from: its first one (deterministic, and the one the
        dataset lists first, e.g. the most specific for `shapes`)."""
        return [record.captions[0] for record in self.records]

    @property
    def all_captions(self) -> list[list[str]]:
        return [record.captions for record in self.records]

    @property
    def attributes(self) -> list[dict | None]:
        return [record.attributes for record in self.records]


def load_real(records: list[ImageRecord]) -> RealSet:
    images = []
    for record in records:
        with record.open_image() as image:
            images.append(image.convert("RGB"))
    return RealSet(records=records, images=images)


def to_tensor(images: list[Image.Image], size: int | None = None) -> torch.Tensor:
    """PIL images -> (N, 3, H, W) float in [0, 1]; resized (bicubic) to `size` when given."""
    arrays = []
    for image in images:
        if size is not None and image.size != (size, size):
            image = image.resize((size, size), Image.BICUBIC)
        arrays.append(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def generate_for_captions(text_to_image, captions: list[str], *, seed: int, steps: int, guidance: float, scheduler: str,
                          batch_size: int, desc: str = "generating"):
    """One image per caption (caption i with seed + i), with a progress bar over all denoising steps.
    Returns the `GeneratedImage`s (image, seed, prompt, infotext)."""
    request = GenerationRequest(prompts=list(captions), num_images=1, seed=seed, steps=steps, guidance=guidance,
                                scheduler=scheduler)
    with progress_bar(desc) as on_step:
        return text_to_image.generate(request, progress_callback=on_step, batch_size=batch_size)
