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


def vae_scores_by_hand(vae_dir: Path, data_dir: Path, split: str, count: int) -> tuple[float, float]:
    """(mean PSNR in dB, mean SSIM) of the first `count` images of `split` (metadata.jsonl order) against
    their reconstructions through the diffusers AutoencoderKL in `vae_dir` (posterior mode), computed without
    latentdiff's metric code: numpy for PSNR, scikit-image's SSIM with Wang et al. 2004's settings (Gaussian
    window of sigma 1.5, 11x11, population covariance), the reference `latentdiff evaluate` must agree with."""
    import json

    from diffusers import AutoencoderKL
    from PIL import Image
    from skimage.metrics import structural_similarity

    folder = Path(data_dir) / split
    names = [json.loads(line)["file_name"] for line in (folder / "metadata.jsonl").read_text().splitlines()[:count]]
    originals = np.stack([np.asarray(Image.open(folder / name).convert("RGB"), dtype=np.float64) / 255 for name in names])
    vae = AutoencoderKL.from_pretrained(vae_dir).eval()
    with torch.no_grad():
        pixels = torch.from_numpy(originals).permute(0, 3, 1, 2).float() * 2 - 1  # (N, 3, H, W) in [-1, 1]
        decoded = vae.decode(vae.encode(pixels).latent_dist.mode()).sample
    reconstructed = ((decoded.permute(0, 2, 3, 1).double().numpy() + 1) / 2).clip(0, 1)  # (N, H, W, 3)
    mse = ((reconstructed - originals) ** 2).mean(axis=(1, 2, 3))
    psnr_db = float(np.mean(10 * np.log10(1 / mse)))
    ssim = float(np.mean([structural_similarity(r, o, data_range=1.0, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                                use_sample_covariance=False) for r, o in zip(reconstructed, originals)]))
    return psnr_db, ssim
