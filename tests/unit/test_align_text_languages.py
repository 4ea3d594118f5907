"""benchmarks/align_text_languages.py: `latentdiff align-text` with the records' flags, its before/after numbers
written to a results file, and a rerun of a finished alignment leaves the folder and the numbers as they are."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from helpers.clip_data import write_tiny_clip_dataset

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
BUNDLED_CLIP = Path(__file__).resolve().parents[2] / "src" / "latentdiff" / "default_model" / "clip"


@pytest.fixture
def align(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the benchmarks import each other as scripts do
    return importlib.import_module("align_text_languages")


def test_results_file_has_the_stage_numbers_and_a_rerun_keeps_them(align, tmp_path):
    data = write_tiny_clip_dataset(tmp_path / "data", num_train=8, num_validation=8)
    out, results = tmp_path / "aligned", tmp_path / "results.json"
    argv = ["--clip", str(BUNDLED_CLIP), "--data", str(data), "--out", str(out), "--epochs", "3", "--batch-size", "8",
            "--results", str(results)]
    assert align.main(argv) == 0
    measured = json.loads(results.read_text())
    assert measured["epochs"] == 3 and measured["batch_size"] == 8 and measured["num_captions"] == 16
    assert measured["before"]["agreement_train"]["zh"]["num_captions"] == 8
    assert measured["after"] == json.loads((out / "alignment_metrics.json").read_text())["after"]

    weights = out / "model.safetensors"
    written = weights.stat().st_mtime_ns
    assert align.main(argv) == 0
    assert weights.stat().st_mtime_ns == written and json.loads(results.read_text()) == measured
