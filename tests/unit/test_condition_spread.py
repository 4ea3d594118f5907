"""benchmarks/condition_spread.py: how far apart an encoder's conditions are, and what whitening would change."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def spread_module(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the benchmarks import each other as scripts do
    return importlib.import_module("condition_spread")


def test_near_twins_give_a_small_ratio_and_evenly_spread_points_a_large_one(spread_module):
    corners = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    assert spread_module.nearest_over_spread(corners) == pytest.approx(2 ** 0.5)
    twins = torch.cat([corners, corners + 0.01])
    assert spread_module.nearest_over_spread(twins) < 0.02
    # the ratio of chosen rows only: the first four have twins, a far point does not
    lone = torch.cat([twins, torch.tensor([[5.0, 5.0]])])
    assert spread_module.nearest_over_spread(lone, torch.tensor([8])) > 1


def test_conditions_on_one_long_axis_are_crowded_until_whitened(spread_module):
    # 64 emoji on an 8 x 8 grid stretched 100 times along x: neighbours along y are close relative to the spread
    grid = torch.stack(torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij"), dim=-1).reshape(-1, 2)
    stretched = grid * torch.tensor([100.0, 1.0])
    row = spread_module.spread(torch.cat([stretched, torch.zeros(64, 6)], dim=1), torch.zeros(64, dtype=torch.bool))
    assert row["effective_rank"] == pytest.approx(1.0, abs=0.05)  # one direction holds nearly all the variance
    assert row["nearest_over_spread"] < 0.01
    assert row["nearest_over_spread_whitened_top8"] > 0.3  # both directions at unit variance
    assert len(row["singular_values"]) == 8 and row["dims"] == 8


def test_a_caption_nearest_its_own_emojis_english_condition_counts_as_agreeing(spread_module):
    english = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0], [20.0, 20.0], [30.0, 30.0]])
    alone = torch.tensor([True, True, False, False, False, False])
    # emoji 0's caption lands on it; emoji 1's lands near emoji 2's English condition, three others nearer than its own
    other = torch.tensor([[0.5, 0.0], [2.0, 8.0]])
    row = spread_module.language_agreement(english, other, torch.tensor([0, 1]), alone)
    assert row["num_captions"] == 2
    assert row["top1"] == 0.5 and row["top1_without_siblings"] == 0.5
    assert row["top5"] == 1.0  # emoji 1 is the fourth nearest to its own caption: among the 5
