"""PSNR and SSIM move the right way."""

from __future__ import annotations

import pytest
import torch
from helpers.eval_data import as_tensor, shapes_scenes

from latentdiff.evaluation.vae_metrics import psnr, ssim


def _images():
    images, _, _ = shapes_scenes(4)
    return as_tensor(images)


def test_identical_images_are_perfect():
    x = _images()
    assert torch.allclose(ssim(x, x), torch.ones(4), atol=1e-6)
    assert (psnr(x, x) >= 99).all()


def test_psnr_of_a_known_error():
    x = torch.full((1, 3, 16, 16), 0.5)
    assert psnr(x + 0.1, x).item() == pytest.approx(20.0, abs=1e-4)  # MSE 0.01 -> 20 dB


def test_more_noise_scores_lower():
    x = _images()
    generator = torch.Generator().manual_seed(0)
    light = (x + 0.05 * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    heavy = (x + 0.3 * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    assert (ssim(light, x) > ssim(heavy, x)).all()
    assert (psnr(light, x) > psnr(heavy, x)).all()
    assert torch.allclose(ssim(light, x), ssim(x, light), atol=1e-6)  # symmetric


def test_colour_error_measures_a_hue_shift_on_the_saturated_pixels():
    """A red area turned orange (the failure PSNR hid) is a large CIEDE2000 error on saturated
    pixels, while the same images score identical colours as 0."""
    from latentdiff.evaluation.vae_metrics import JUST_NOTICEABLE_DELTA_E, colour_error

    red = torch.zeros(1, 3, 16, 16)
    red[:, 0] = 0.85  # (0.85, 0, 0): a saturated red
    red[:, :, :4] = 1.0  # a white band: not saturated
    orange = red.clone()
    orange[:, 1, 4:] = 0.35  # the red area turned orange (green channel +0.35)
    same = colour_error(red, red)
    assert same["delta_e2000"] == pytest.approx(0.0, abs=1e-6)
    assert same["saturated_fraction"] == pytest.approx(0.75)
    shifted = colour_error(orange, red)
    assert shifted["delta_e2000_saturated"] > 5 * JUST_NOTICEABLE_DELTA_E  # measured 14.1
    assert shifted["delta_e2000"] == pytest.approx(0.75 * shifted["delta_e2000_saturated"], rel=1e-6)
