"""A cheap latent -> RGB preview of an image while it is being denoised.

Decoding the latents with the VAE at every step would cost as much as a U-Net step. AUTOMATIC1111's
"Approx cheap" preview instead multiplies the 4 latent channels by a fixed 4x3 matrix that was fitted
once for Stable Diffusion's VAE. Our VAEs are trained here, so there is no published matrix: we fit one
for the loaded VAE when the server starts, by least squares between the (scaled) latents of a few smooth
random images and those images averaged down to the latent grid. One encode of a few small images.
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from latentdiff.runtime import module_device_dtype

FIT_IMAGES = 8  # smooth random images encoded to fit the map
FIT_IMAGE_SIDE = 64  # their side in pixels; latents are FIT_IMAGE_SIDE / vae_scale_factor
PREVIEW_MIN_SIDE = 64  # previews smaller than this are upscaled so the page shows more than a dot


@torch.no_grad()
def fit_latent_to_rgb(vae, scaling_factor: float, seed: int = 0) -> torch.Tensor:
    """A (C + 1, 3) matrix mapping [scaled latent channels, 1] to RGB in [0, 1]."""
    gen = torch.Generator("cpu").manual_seed(seed)
    # Colours on a 4x4 grid, upsampled: smooth images whose colour changes slowly across the latent grid.
    coarse = torch.rand(FIT_IMAGES, 3, 4, 4, generator=gen)
    images = F.interpolate(coarse, size=(FIT_IMAGE_SIDE, FIT_IMAGE_SIDE), mode="bilinear", align_corners=False)
    device, dtype = module_device_dtype(vae)
    latents = vae.encode((images * 2 - 1).to(device, dtype)).latent_dist.mean
    latents = latents.float().cpu() * scaling_factor  # (N, C, h, w), as the denoiser sees them
    targets = F.adaptive_avg_pool2d(images, latents.shape[-2:])  # (N, 3, h, w)
    x = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])  # (N*h*w, C)
    x = torch.cat([x, torch.ones(x.shape[0], 1)], dim=1)  # (N*h*w, C + 1): a bias column
    y = targets.permute(0, 2, 3, 1).reshape(-1, 3)  # (N*h*w, 3)
    return torch.linalg.lstsq(x, y).solution  # (C + 1, 3)


def latents_to_png(latents: torch.Tensor, index: int, matrix: torch.Tensor) -> bytes:
    """PNG of image `index` of `latents` (B, C, h, w) through the fitted `matrix` (C + 1, 3)."""
    lat = latents[index].detach().float().cpu()  # (C, h, w)
    rgb = torch.einsum("chw,ck->hwk", lat, matrix[:-1]) + matrix[-1]  # (h, w, 3)
    pixels = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    if min(image.size) < PREVIEW_MIN_SIDE:
        scale = -(-PREVIEW_MIN_SIDE // min(image.size))
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
