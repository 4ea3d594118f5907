"""Builders for the evaluation tests: `shapes` scenes and prepared datasets, a random CLIP folder, and
the EfficientNet-Lite0 extractor loaded once per test session."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch


@lru_cache(maxsize=1)
def lite0():
    from latentdiff.evaluation.features import Lite0Features

    return Lite0Features("cpu")


@lru_cache(maxsize=8)
def shapes_scenes(count: int, image_size: int = 64, seed: int = 0):
    """(images as (H, W, 3) uint8 arrays, attributes, captions) of `count` shapes scenes."""
    from latentdiff.data.sources.shapes import make_scene, render_scene

    images, attributes, captions = [], [], []
    for index in range(count):
        attrs, caps = make_scene(seed, index, image_size)
        images.append(np.asarray(render_scene(attrs)))
        attributes.append(attrs)
        captions.append(caps)
    return images, attributes, captions


def as_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """(N, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0


@lru_cache(maxsize=4)
def shapes_features(count: int, seed: int = 0) -> torch.Tensor:
    images, _, _ = shapes_scenes(count, 64, seed)
    return lite0()(as_tensor(images))


def prepare_shapes(out: Path, num_images: int, image_size: int = 64) -> Path:
    """A prepared `shapes` dataset (about 6% of the images land in the test split)."""
    from latentdiff.config import PrepareDataConfig
    from latentdiff.stages import prepare_data

    prepare_data.run(PrepareDataConfig(source="shapes", out=str(out), num_images=num_images, image_size=image_size))
    return out
