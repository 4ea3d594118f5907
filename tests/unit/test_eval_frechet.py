"""Fréchet distance on Lite0 features: the formula, the noise floor, the minimum number of images."""

from __future__ import annotations

import pytest
import torch
from helpers.eval_data import lite0, shapes_features

from latentdiff.errors import UserError
from latentdiff.evaluation.frechet import (MIN_FRECHET_IMAGES, check_enough_images, frechet_distance,
                                           frechet_distance_from_stats, split_halves)


def test_closed_form_for_diagonal_gaussians():
    """For commuting covariances d^2 = |mu1 - mu2|^2 + sum (sqrt(s1) - sqrt(s2))^2."""
    mean_1, mean_2 = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64), torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    var_1, var_2 = torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64), torch.tensor([4.0, 4.0, 1.0], dtype=torch.float64)
    expected = float((mean_1 - mean_2).square().sum() + (var_1.sqrt() - var_2.sqrt()).square().sum())
    got = frechet_distance_from_stats(mean_1, torch.diag(var_1), mean_2, torch.diag(var_2))
    assert got == pytest.approx(expected, rel=1e-9)


def test_same_set_is_zero_and_a_shift_adds_its_square():
    features = torch.randn(50, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-6)
    shift = torch.zeros(8, dtype=torch.float64)
    shift[0] = 3.0
    assert frechet_distance(features, features + shift) == pytest.approx(9.0, rel=1e-6)


def test_noise_floor_is_below_the_distance_to_noise_images():
    real = shapes_features(16)  # (16, 1280): real `shapes` scenes
    noise = lite0()(torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    first, second = split_halves(len(real))
    floor = frechet_distance(real[first], real[second])
    to_noise = frechet_distance(noise, real[second])  # the same sizes as the floor
    assert floor < 0.5 * to_noise


def test_split_halves_are_disjoint_and_equal():
    first, second = split_halves(31)
    assert len(first) == len(second) == 15 and not set(first) & set(second)


def test_too_few_images_says_how_many_are_needed():
    check_enough_images(2 * MIN_FRECHET_IMAGES, "images", halves=True)
    with pytest.raises(UserError, match=f"at least {2 * MIN_FRECHET_IMAGES} images") as err:
        check_enough_images(2 * MIN_FRECHET_IMAGES - 1, "images", halves=True)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("count", [12, 80])  # fewer and more images than dimensions: both formulas
def test_small_and_large_sample_formulas_agree(count):
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(count, 40, generator=generator, dtype=torch.float64)
    b = 0.5 * torch.randn(count + 3, 40, generator=generator, dtype=torch.float64) + 0.3
    from latentdiff.evaluation.frechet import feature_statistics

    by_stats = frechet_distance_from_stats(*feature_statistics(a), *feature_statistics(b))
    assert frechet_distance(a, b) == pytest.approx(by_stats, rel=1e-7)
