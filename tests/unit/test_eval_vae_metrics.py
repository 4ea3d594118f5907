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


def test_flat_colour_error_sees_a_hue_shift_but_not_a_blurred_edge():
    """The mean over all pixels mixes colour with sharpness; over the flat pixels only colour counts."""
    from latentdiff.evaluation.vae_metrics import JUST_NOTICEABLE_DELTA_E, colour_error

    image = torch.ones(1, 3, 16, 16)  # white, with a saturated red right half: one vertical edge at x = 8
    image[:, 1:, :, 8:] = 0.0
    image[:, 0, :, 8:] = 0.85
    blurred = image.clone()
    blurred[..., 7:9] = image[..., 7:9].mean(dim=-1, keepdim=True)  # the two columns at the edge averaged
    blur = colour_error(blurred, image)
    assert blur["flat_fraction"] == pytest.approx(14 / 16)  # every pixel but the two edge columns
    assert blur["delta_e2000"] > 2 and blur["delta_e2000_flat"] == pytest.approx(0.0, abs=1e-6)
    orange = image.clone()
    orange[:, 1, :, 10:] = 0.35  # part of the red area turned orange: a new edge at x = 10 in the copy only
    shift = colour_error(orange, image)
    assert shift["delta_e2000_flat"] > 2 * JUST_NOTICEABLE_DELTA_E  # measured 6.1: 14.1 on 6 of the 14 flat columns
