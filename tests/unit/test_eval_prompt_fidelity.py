"""Prompt fidelity: generated image i should sit nearest the real image of caption i."""

from __future__ import annotations

import pytest
import torch
from helpers.eval_data import shapes_features, shapes_scenes

from latentdiff.evaluation.prompt_fidelity import chance_top_k, prompt_fidelity


def test_real_images_score_perfectly_against_their_own_captions():
    features = shapes_features(16)
    _, _, captions = shapes_scenes(16)
    result = prompt_fidelity(features, features, [c[0] for c in captions], [list(c) for c in captions])
    assert result["top1"] == 1.0 and result["top5"] == 1.0
    assert result["chance_top1"] < 0.1


def test_images_of_other_captions_score_near_chance():
    features = shapes_features(16)
    _, _, captions = shapes_scenes(16)
    firsts = [c[0] for c in captions]
    shuffled = torch.roll(features, shifts=7, dims=0)  # image i now shows scene i-7
    result = prompt_fidelity(shuffled, features, firsts, [list(c) for c in captions])
    assert result["top1"] <= 2 / 16
    assert result["top5"] < 0.5


def test_chance_level_counts_shared_captions():
    # 4 real images; caption 0 is carried by two of them, caption 1 by one
    matches = torch.tensor([[True, True, False, False], [False, False, True, False]])
    assert chance_top_k(matches, 1) == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert chance_top_k(matches, 4) == 1.0


def test_shared_caption_counts_a_hit_for_any_of_its_images():
    real = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], dtype=torch.float64)
    generated = torch.tensor([[9.0, 0.0]], dtype=torch.float64)  # nearest real: image 1
    result = prompt_fidelity(generated, real, ["a red circle"], [["a red circle"], ["a red circle"], ["a blue square"]])
    assert result["top1"] == 1.0
