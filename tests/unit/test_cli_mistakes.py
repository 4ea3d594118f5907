"""Mistakes on the command line end in one sentence and status 2, before torch or any model loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import latentdiff
from latentdiff.cli import main
from latentdiff.errors import UserError

SRC = Path(latentdiff.__file__).resolve().parents[1]  # the latentdiff under test, for a fresh interpreter


def _error_line(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("argv", [
    ["generate", "a red circle"],
    ["train-unet", "--data", "d", "--clip", "c", "--vae", "v"],
    ["train-clip", "--data", "d"],
    ["train-vae", "--data", "d"],
    ["train", "--data", "d"],
    ["evaluate", "--model", "m", "--data", "d"],
    ["prepare-data", "shapes"],
], ids=lambda argv: argv[0])
@pytest.mark.parametrize("inside", [False, True], ids=["file", "below-a-file"])
def test_out_at_an_existing_file_is_one_sentence(tmp_path, capsys, argv, inside):
    existing = tmp_path / "notes.txt"
    existing.write_text("not a folder")
    out = existing / "run" if inside else existing
    line = _error_line(capsys, [*argv, "--out", str(out)])
    assert line.endswith("which is a file; pass a folder (it is created if needed)" if inside else
                         "is a file; pass a folder (it is created if needed)")
    assert existing.read_text() == "not a folder"


@pytest.mark.parametrize("argv", [
    ["train-unet", "--lr", "nan"],
    ["train-unet", "--lr", "inf"],
    ["train-clip", "--weight-decay", "nan"],
    ["train-vae", "--kl-weight", "inf"],
    ["train-unet", "--snr-gamma", "nan"],
    ["generate", "red", "--guidance", "nan"],
    ["evaluate", "--guidance-sweep", "1,inf"],
], ids=lambda argv: f"{argv[0]}{argv[-2]}={argv[-1]}")
def test_float_options_refuse_nan_and_inf(capsys, argv):
    line = _error_line(capsys, argv)
    assert line.endswith(f"argument {argv[-2]}: must be a finite number, got '{argv[-1].split(',')[-1]}'")


def test_keep_alive_still_takes_inf_as_the_longest_wait():
    from latentdiff.config import GenerateConfig
    from latentdiff.options import parse_config

    assert parse_config(GenerateConfig, ["red", "--keep-alive", "inf"], "p", "d").keep_alive == float("inf")


def test_mistakes_are_reported_before_torch_is_imported(tmp_path):
    """A mistake is answered in a fraction of a second: torch (and diffusers) are not even imported."""
    existing = tmp_path / "file"
    existing.write_text("")
    missing, out = str(tmp_path / "no-dataset"), str(tmp_path / "out")
    mistakes = [["train-unet", "--lr", "nan"], ["train-clip", "--out", str(existing)],
                ["generate", "red", "--out", str(existing)], ["train", "--max-steps", "x"],
                ["train-unet", "--data", missing, "--clip", "c", "--vae", "v", "--out", out],
                ["train-vae", "--data", missing, "--out", out], ["train", "--data", missing, "--out", out]]
    code = ("import sys\nfrom latentdiff.cli import main\n"
            f"for argv in {mistakes!r}:\n"
            "    try:\n        status = main(argv)\n    except SystemExit as e:\n        status = e.code\n"
            "    assert status == 2, (argv, status)\n"
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_pickled_clip_folder_without_a_tokenizer_is_one_sentence(tmp_path):
    """`CLIPModel.save_pretrained(dir, safe_serialization=False)` writes config.json + pytorch_model.bin and
    no tokenizer: --init with --allow-pickle used to crash (or silently train on <unk> tokens)."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    from latentdiff.models.clip import load_clip

    tiny = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    model = CLIPModel(CLIPConfig(text_config={**tiny, "vocab_size": 100}, vision_config={**tiny, "image_size": 32,
                                                                                          "patch_size": 16}))
    folder = tmp_path / "pickled-clip"
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(UserError, match=r"has no tokenizer \(tokenizer.json or vocab.json \+ merges.txt\); "
                                        r"save the tokenizer there too"):
        load_clip(str(folder), allow_pickle=True)
