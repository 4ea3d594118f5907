"""The server's cheap latent -> RGB preview: a least-squares map fitted to the loaded VAE."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from latentdiff.server.preview import PREVIEW_MIN_SIDE, fit_latent_to_rgb, latents_to_png


class LinearColourVae(torch.nn.Module):
    """A VAE whose 4 latent channels are a fixed linear mix of the colours, averaged over 2x2 pixels:
    the case where a linear preview can be exact, so the fit must recover it."""

    def __init__(self):
        super().__init__()
        self.mix = torch.nn.Parameter(torch.tensor([[0.9, -0.2, 0.1], [0.1, 0.8, -0.3], [-0.2, 0.3, 0.7],
                                                    [0.3, 0.3, 0.3]]), requires_grad=False)  # (4, 3)

    def encode(self, pixels):  # pixels (B, 3, H, W) in [-1, 1]
        latents = torch.einsum("kc,bchw->bkhw", self.mix, F.avg_pool2d(pixels, 2)) + 0.05
        return SimpleNamespace(latent_dist=SimpleNamespace(mean=latents))


def preview_of(rgb: tuple[float, float, float], vae, matrix, scaling_factor: float) -> np.ndarray:
    image = torch.tensor(rgb).view(1, 3, 1, 1).expand(1, 3, 16, 16)
    latents = vae.encode(image * 2 - 1).latent_dist.mean * scaling_factor  # (1, 4, 8, 8)
    return np.asarray(Image.open(io.BytesIO(latents_to_png(latents, 0, matrix))), dtype=float)


def test_fit_recovers_the_colours_a_linear_vae_encodes():
    vae, scaling_factor = LinearColourVae(), 0.5
    matrix = fit_latent_to_rgb(vae, scaling_factor)
    assert matrix.shape == (5, 3)
    for rgb in [(1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.2, 0.7, 0.3), (1.0, 1.0, 1.0)]:
        preview = preview_of(rgb, vae, matrix, scaling_factor)
        assert np.abs(preview.mean(axis=(0, 1)) - 255 * np.array(rgb)).max() < 3


def test_preview_is_a_png_big_enough_to_see_and_picks_the_image():
    vae = LinearColourVae()
    matrix = fit_latent_to_rgb(vae, 1.0)
    red, blue = (torch.tensor(c).view(1, 3, 1, 1).expand(1, 3, 8, 8) for c in ((1.0, 0, 0), (0, 0, 1.0)))
    latents = vae.encode(torch.cat([red, blue]) * 2 - 1).latent_dist.mean  # (2, 4, 4, 4)
    first = Image.open(io.BytesIO(latents_to_png(latents, 0, matrix)))
    second = np.asarray(Image.open(io.BytesIO(latents_to_png(latents, 1, matrix))), dtype=float)
    assert first.format == "PNG" and first.mode == "RGB" and min(first.size) >= PREVIEW_MIN_SIDE
    assert np.asarray(first, dtype=float)[..., 0].mean() > 200 and second[..., 2].mean() > 200
