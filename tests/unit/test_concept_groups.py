"""The emoji benchmarks' group score: skin-tone variants of one emoji count as one concept."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch

from latentdiff.evaluation.prompt_fidelity import prompt_fidelity

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def group(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the benchmarks import each other as scripts do
    return importlib.import_module("multilingual_agreement").concept_group


def test_skin_tone_variants_share_a_group_and_other_emoji_do_not(group):
    # the emoji package's names, and the same names as prepare-data stores them (punctuation dropped)
    assert group("handshake: light skin tone, dark skin tone") == group("handshake") == "handshake"
    assert group("man: medium-dark skin tone, beard") == group("man beard") == group("man dark skin tone beard")
    assert group("woman running facing right medium-light skin tone") == "woman running facing right"
    assert group("red apple") == "red apple" != group("green apple")
    assert group("flag: Colombia") != group("flag: Namibia")
    assert group("dark sunglasses") == "dark sunglasses"  # "dark" alone is not a skin tone


def test_a_sibling_is_a_group_hit_but_not_an_exact_hit(group):
    names = ["waving hand", "waving hand dark skin tone", "red apple"]
    real = torch.eye(3)  # (N_real, D): three distinct images
    generated = real[[0]]  # drawn for "waving hand dark skin tone", landing on the yellow waving hand
    exact = prompt_fidelity(generated, real, ["waving hand dark skin tone"], [[n] for n in names], top_k=(1,))
    grouped = prompt_fidelity(generated, real, [group("waving hand dark skin tone")], [[group(n)] for n in names],
                              top_k=(1,))
    assert exact["top1"] == 0.0 and grouped["top1"] == 1.0
    assert grouped["chance_top1"] > exact["chance_top1"]  # two of the three images are in the group


def test_spread_concepts_cover_the_whole_split_and_the_first_ones_do_not(monkeypatch):
    from types import SimpleNamespace

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    concepts = importlib.import_module("multilingual_agreement").concepts
    # 103 records sorted by name as a prepared split is; every one captioned in en and fr
    records = [SimpleNamespace(name=f"e{i:03d}", languages=["en", "fr"], captions=[f"en {i}", f"fr {i}"])
               for i in range(103)]
    spread = [record.name for record, _ in concepts(records, ("en", "fr"), 10, spread=True)]
    assert len(set(spread)) == 10 and spread[0] == "e000" and spread[-1] >= "e090"  # up to the end of the split
    first = [record.name for record, _ in concepts(records, ("en", "fr"), 10)]
    assert first == [f"e{i:03d}" for i in range(10)]
    assert len(concepts(records, ("en", "fr"), 500, spread=True)) == 103  # asked for more than there are: all
    assert concepts(records, ("en", "de"), 10, spread=True) == []  # no German caption: not eligible
