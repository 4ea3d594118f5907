"""benchmarks/align_text_languages.py: after the alignment, a caption in another language gives nearly the
hidden states of its English caption, and the result is a CLIP folder train-unet and transformers load."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch
from helpers.clip_data import write_tiny_clip_dataset

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
BUNDLED_CLIP = Path(__file__).resolve().parents[2] / "src" / "latentdiff" / "default_model" / "clip"


@pytest.fixture
def align(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the benchmarks import each other as scripts do
    return importlib.import_module("align_text_languages")


def test_other_languages_move_to_their_english_caption_and_the_folder_loads(align, tmp_path, capsys):
    # 8 distinct concepts ("a red square" / "红色的方块", ...): the English and Chinese captions of one image
    data = write_tiny_clip_dataset(tmp_path / "data", num_train=8, num_validation=8)
    out, results = tmp_path / "aligned", tmp_path / "results.json"
    assert align.main(["--clip", str(BUNDLED_CLIP), "--data", str(data), "--out", str(out), "--epochs", "60",
                       "--lr", "1e-3", "--results", str(results)]) == 0
    measured = json.loads(results.read_text())
    before, after = measured["before"]["agreement_train"], measured["after"]["agreement_train"]
    assert after["zh"]["top1"] == 1.0 > before["zh"]["top1"]  # every Chinese caption lands on its English one
    assert measured["final_relative_loss"] < 0.2

    # A rerun (runs/default.sh resuming) leaves the finished alignment as it is and says so.
    weights = out / "model.safetensors"
    written = weights.stat().st_mtime_ns
    assert align.main(["--clip", str(BUNDLED_CLIP), "--data", str(data), "--out", str(out),
                       "--results", str(results)]) == 0
    assert "finished alignment" in capsys.readouterr().out
    assert weights.stat().st_mtime_ns == written and json.loads(results.read_text()) == measured

    from transformers import CLIPModel, CLIPTokenizer

    from latentdiff.data.cache import pipeline_token_ids
    from latentdiff.stages.train_unet import load_text_encoder

    model, tokenizer = CLIPModel.from_pretrained(out), CLIPTokenizer.from_pretrained(out)
    original = CLIPModel.from_pretrained(BUNDLED_CLIP)
    assert torch.equal(model.vision_model.embeddings.patch_embedding.weight,
                       original.vision_model.embeddings.patch_embedding.weight)  # only the text tower trained
    text_encoder, _ = load_text_encoder(out)
    ids = pipeline_token_ids(tokenizer, ["a red square", "红色的方块", "a blue circle"])
    with torch.no_grad():
        states = text_encoder(ids)[0]  # (3, L, D): what the U-Net cross-attends to
    same, other = (states[0] - states[1]).norm(), (states[0] - states[2]).norm()
    assert same < other  # one concept in two languages is closer than two concepts in one
