"""`latentdiff align-text`: after the alignment a caption in another language gives nearly the hidden states of its
English caption, the output is a CLIP folder that transformers and train-unet load, and bad input is one sentence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers.clip_data import keep_english_captions, write_tiny_clip_dataset

from latentdiff import cli

BUNDLED = Path(__file__).resolve().parents[2] / "src" / "latentdiff" / "default_model"
BUNDLED_CLIP = BUNDLED / "clip"


def test_other_languages_move_to_their_english_caption_and_the_folder_loads(tmp_path, capsys):
    # 8 distinct concepts ("a red square" / "红色的方块", ...): the English and Chinese captions of one image
    data = write_tiny_clip_dataset(tmp_path / "data", num_train=8, num_validation=8)
    out = tmp_path / "aligned"
    argv = ["align-text", "--clip", str(BUNDLED_CLIP), "--data", str(data), "--out", str(out), "--epochs", "60",
            "--lr", "1e-3"]
    assert cli.main(argv) == 0  # the default batch (256) is more than the 16 captions: one batch of all of them
    printed = capsys.readouterr().out
    assert "using 16" in printed and "after: agreement train" in printed
    measured = json.loads((out / "alignment_metrics.json").read_text())
    before, after = measured["before"]["agreement_train"], measured["after"]["agreement_train"]
    assert after["zh"]["top1"] == 1.0 > before["zh"]["top1"]  # every Chinese caption lands on its English one
    assert measured["final_relative_loss"] < 0.2 and measured["num_captions"] == 16
    assert set(measured["after"]["retrieval_validation"]) >= {"text_to_image/R@1", "text_to_image/R@5"}

    # Rerunning the finished command trains nothing and says so.
    weights = out / "model.safetensors"
    written = weights.stat().st_mtime_ns
    assert cli.main(argv) == 0
    assert "already holds a finished aligned CLIP model" in capsys.readouterr().out
    assert weights.stat().st_mtime_ns == written

    from transformers import CLIPModel, CLIPTokenizer

    from latentdiff.data.cache import pipeline_token_ids
    from latentdiff.stages.train_unet import load_text_encoder

    model, tokenizer = CLIPModel.from_pretrained(out), CLIPTokenizer.from_pretrained(out)
    original = CLIPModel.from_pretrained(BUNDLED_CLIP)
    assert torch.equal(model.vision_model.embeddings.patch_embedding.weight,
                       original.vision_model.embeddings.patch_embedding.weight)  # only the text tower trained
    assert torch.equal(model.text_projection.weight, original.text_projection.weight)
    text_encoder, _ = load_text_encoder(out)
    ids = pipeline_token_ids(tokenizer, ["a red square", "红色的方块", "a blue circle"])
    with torch.no_grad():
        states = text_encoder(ids)[0]  # (3, L, D): what the U-Net cross-attends to
    same, other = (states[0] - states[1]).norm(), (states[0] - states[2]).norm()
    assert same < other  # one concept in two languages is closer than two concepts in one


@pytest.mark.parametrize("case", ["one language", "a pipeline as --clip", "no --clip", "--init", "--preset"])
def test_bad_input_is_one_sentence_and_writes_nothing(tmp_path, capsys, case):
    data = write_tiny_clip_dataset(tmp_path / "data", num_train=8, num_validation=2)
    out = tmp_path / "aligned"
    args = {"one language": ["--clip", str(BUNDLED_CLIP)], "a pipeline as --clip": ["--clip", str(BUNDLED)],
            "no --clip": [], "--init": ["--init", str(BUNDLED_CLIP)],
            "--preset": ["--clip", str(BUNDLED_CLIP), "--preset", "small"]}[case]
    if case == "one language":
        keep_english_captions(data)
    assert cli.main(["align-text", "--data", str(data), "--out", str(out), *args]) == 2
    error = capsys.readouterr().err.strip()
    expected = {"one language": "all in one language (en)", "a pipeline as --clip": "is a pipeline folder",
                "no --clip": "Say which CLIP", "--init": "not --init", "--preset": "no --preset"}[case]
    assert expected in error and len(error.splitlines()) == 1, error
    assert not out.exists()


def test_a_run_that_aligned_is_scored_and_bundled_with_its_aligned_clip(tmp_path):
    import shutil

    from latentdiff.config import EvaluateConfig
    from latentdiff.folder_kinds import run_text_encoder_clip
    from latentdiff.stages.evaluate import find_clip

    run = tmp_path / "run"
    (run / "pipeline").mkdir(parents=True)
    shutil.copytree(BUNDLED_CLIP, run / "clip")
    assert run_text_encoder_clip(run) == run / "clip"  # English captions: the U-Net trained on RUN/clip
    assert find_clip(EvaluateConfig(), str(run / "pipeline")) == (run / "clip").resolve()
    shutil.copytree(BUNDLED_CLIP, run / "clip-aligned")
    assert run_text_encoder_clip(run) == run / "clip-aligned"
    assert find_clip(EvaluateConfig(), str(run / "pipeline")) == (run / "clip-aligned").resolve()


def test_help_lists_only_the_flags_it_takes(capsys):
    with pytest.raises(SystemExit):
        cli.main(["align-text", "--help"])
    shown = capsys.readouterr().out
    flags = {line.split()[0] for line in shown.splitlines() if line.strip().startswith("--")}
    assert "--clip" in flags and "--epochs" in flags
    assert "--init" not in flags and "--preset" not in flags  # refused: the model is --clip's
    assert "--init" not in shown  # nor does any help sentence point to it


def test_the_task_lets_the_frozen_teacher_go_once_it_has_its_targets(tmp_path):
    # The teacher is a whole second CLIP: it gives the targets and the starting point, then must not stay in memory
    # for the run (a large CLIP on a GPU would hold its weights twice).
    import gc
    import weakref

    from latentdiff.data.prepared import open_prepared
    from latentdiff.models.clip import load_clip
    from latentdiff.training.text_alignment import TextAlignmentTask

    data = write_tiny_clip_dataset(tmp_path / "data", num_train=4, num_validation=4)
    teacher, tokenizer, processor = load_clip(BUNDLED_CLIP)
    task = TextAlignmentTask(teacher, tokenizer, processor, open_prepared(data), 4, device=torch.device("cpu"))
    gone = weakref.ref(teacher)
    del teacher
    gc.collect()
    assert gone() is None
    assert task.targets.shape[0] == 4 and task.before["agreement_train"]  # what it took from the teacher stays
