"""Reconstruction quality of a VAE: PSNR and SSIM per image, and reconstructions through the VAE.

SSIM follows Wang, Bovik, Sheikh & Simoncelli 2004 ("Image quality assessment: from error visibility to
structural similarity", eq. 13) with their constants: an 11x11 Gaussian window of sigma 1.5,
K1 = 0.01, K2 = 0.03, dynamic range L = 1 for images in [0, 1]; computed per channel over the valid
window positions and averaged, as skimage and pytorch-msssim do. It is this small torch convolution so
validation computes it batched on the model's device; tests check it against scikit-image's
`structural_similarity`.

Colour error: PSNR averages over pixels and hides a hue shift over a flat area (a 22 dB VAE turned red
apples orange). So reconstructions are also compared in CIELAB with CIEDE2000 (Sharma, Wu & Dalal 2005;
scikit-image's `deltaE_ciede2000`): mean ΔE00 over all pixels, and over the *saturated* pixels only
(Lab chroma above SATURATED_CHROMA in the original), where a hue change is what a person sees first.
A ΔE00 below about 2 is barely perceptible side by side; JUST_NOTICEABLE_DELTA_E is the threshold we report.
The mean over all pixels also counts every edge the decoder blurs (at 64 px most of an emoji's detail is edges),
so the error is also given over the *flat* pixels (no visible colour step to any of their four neighbours in
the original): the colour of areas, apart from sharpness.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from skimage.color import deltaE_ciede2000, rgb2lab

from latentdiff.runtime import module_device_dtype

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
VAE_BATCH_SIZE = 16
SATURATED_CHROMA = 30.0  # Lab chroma sqrt(a^2 + b^2) above which a pixel counts as saturated (red apple ~ 60-70)
JUST_NOTICEABLE_DELTA_E = 2.0  # mean CIEDE2000 below this: colours a person cannot tell apart side by side


def psnr(reconstructed: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) in [0, 1] -> (B,) peak signal-to-noise ratio in dB (capped at 100 dB for identical images)."""
    mse = (reconstructed.double() - original.double()).square().flatten(1).mean(dim=1)
    return (10 * torch.log10(1.0 / mse.clamp(min=1e-10))).float()


def _gaussian_window(size: int, sigma: float, channels: int) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-coords.square() / (2 * sigma**2))
    g = g / g.sum()
    window = torch.outer(g, g)  # (size, size), sums to 1
    return window.expand(channels, 1, size, size).contiguous()  # depthwise: one window per channel


def ssim(reconstructed: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) in [0, 1] -> (B,) mean structural similarity (1 for identical images)."""
    x, y = reconstructed.double(), original.double()
    channels = x.shape[1]
    size = min(SSIM_WINDOW, x.shape[-1], x.shape[-2])
    window = _gaussian_window(size, SSIM_SIGMA, channels)
    blur = lambda t: F.conv2d(t, window, groups=channels)  # noqa: E731  local means, valid positions
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x.square()
    var_y = blur(y * y) - mu_y.square()
    cov_xy = blur(x * y) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # (K L)^2 with L = 1
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(dim=1).float()


@torch.no_grad()
def reconstruct(vae, images: torch.Tensor, batch_size: int = VAE_BATCH_SIZE) -> torch.Tensor:
    """images (N, 3, H, W) in [0, 1] -> reconstructions (N, 3, H, W) in [0, 1] through a diffusers
    AutoencoderKL, using the posterior mode (no sampling, so the same images give the same numbers)."""
    device, dtype = module_device_dtype(vae)  # also an ONNX / OpenVINO VAE (evaluate --backend)
    outputs = []
    for batch in images.split(batch_size):
        pixels = (batch * 2 - 1).to(device, dtype)  # (B, 3, H, W) in [-1, 1], the VAE's range
        latents = vae.encode(pixels).latent_dist.mode()  # (B, C_latent, H/f, W/f)
        decoded = vae.decode(latents).sample  # (B, 3, H, W)
        outputs.append(((decoded.float().cpu() + 1) / 2).clamp(0, 1))
    return torch.cat(outputs)


def _flat_pixels(lab: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) CIELAB -> (B, H, W) bool: pixels within JUST_NOTICEABLE_DELTA_E of each of their four
    neighbours (the image's border repeats outwards), i.e. inside an area of one visible colour."""
    height, width = lab.shape[1:3]
    padded = np.pad(lab, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")  # (B, H+2, W+2, 3)
    flat = np.ones(lab.shape[:3], dtype=bool)
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        neighbour = padded[:, 1 + dy:1 + dy + height, 1 + dx:1 + dx + width]
        flat &= deltaE_ciede2000(lab, neighbour, channel_axis=-1) <= JUST_NOTICEABLE_DELTA_E
    return flat


def colour_error(reconstructed: torch.Tensor, original: torch.Tensor) -> dict[str, float]:
    """(B, 3, H, W) sRGB in [0, 1] -> {"delta_e2000": mean ΔE00 over all pixels, "delta_e2000_saturated":
    mean over the original's saturated pixels, "delta_e2000_flat": mean over its flat pixels (each NaN when there
    are none), "saturated_fraction", "flat_fraction"}."""
    lab_rec = rgb2lab(reconstructed.double().permute(0, 2, 3, 1).cpu().numpy(), channel_axis=-1)  # (B, H, W, 3)
    lab_orig = rgb2lab(original.double().permute(0, 2, 3, 1).cpu().numpy(), channel_axis=-1)
    delta = torch.from_numpy(deltaE_ciede2000(lab_orig, lab_rec, channel_axis=-1))  # (B, H, W)
    chroma = torch.from_numpy((lab_orig[..., 1] ** 2 + lab_orig[..., 2] ** 2) ** 0.5)  # (B, H, W)
    saturated = chroma > SATURATED_CHROMA
    flat = torch.from_numpy(_flat_pixels(lab_orig))  # (B, H, W)
    mean_over = lambda mask: float(delta[mask].mean()) if mask.any() else float("nan")  # noqa: E731
    return {"delta_e2000": float(delta.mean()),
            "delta_e2000_saturated": mean_over(saturated), "delta_e2000_flat": mean_over(flat),
            "saturated_fraction": float(saturated.double().mean()), "flat_fraction": float(flat.double().mean())}


def reconstruction_metrics(reconstructed: torch.Tensor, original: torch.Tensor) -> dict[str, float]:
    """(B, 3, H, W) in [0, 1] -> mean and worst PSNR (dB), mean SSIM and the colour errors of `colour_error`."""
    per_image_psnr = psnr(reconstructed, original)  # (B,)
    return {"psnr_db": float(per_image_psnr.double().mean()), "psnr_db_min": float(per_image_psnr.min()),
            "ssim": float(ssim(reconstructed, original).double().mean()),
            **colour_error(reconstructed, original)}
