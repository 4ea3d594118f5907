"""`--config FILE` (TOML, JSON, or a saved latentdiff_config.json) reruns a run; flags override it;
a mistake in the file is one line that names it. `--help` shows each stage's real defaults."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from helpers.clip_data import write_tiny_clip_dataset
from latentdiff.config import UnetTrainConfig
from latentdiff.presets import CLIP_PRESETS, UNET_PRESETS, VAE_PRESETS
from latentdiff.options import parse_config
from latentdiff.stages import train, train_clip, train_unet, train_vae


def parse(argv: list[str]) -> UnetTrainConfig:
    return parse_config(UnetTrainConfig, argv, "latentdiff train-unet", "")


def test_toml_sets_options_and_flags_win(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('data = "data/emoji"\nbatch-size = 12\nlr = 3e-4\nema_decay = 0.0\ncache = false\n'
                      'validation_prompts = ["a red square, on white", "a blue circle"]\n')
    cfg = parse(["--config", str(config), "--lr", "0.01", "--out", str(tmp_path / "run")])
    assert (cfg.data, cfg.batch_size, cfg.ema_decay, cfg.cache) == ("data/emoji", 12, 0.0, False)
    assert cfg.lr == 0.01 and cfg.out == str(tmp_path / "run")  # the command line wins
    assert cfg.validation_prompts == ["a red square, on white", "a blue circle"]  # a comma stays in its prompt
    assert parse(["--config", str(config), "--cache"]).cache is True


@pytest.mark.parametrize("content, name, expected", [
    ('lr = 1e-4\nbatch_sise = 8\n', "run.toml", "unknown option 'batch_sise'"),
    ('lr = "fast"\n', "run.toml", "--lr: invalid float value: 'fast'"),
    ('prediction_type = "x0"\n', "run.toml", "--prediction-type: invalid choice: 'x0'"),
    ('lr = [1, 2]\n', "run.toml", "'lr' takes one value"),
    ('lr = \n', "run.toml", "not valid TOML"),
    ('{"stage": "VaeTrainConfig", "config": {"lr": 1e-4}}', "latentdiff_config.json",
     "holds the options of VaeTrainConfig, not UnetTrainConfig"),
])
def test_a_mistake_in_the_file_is_one_line_that_names_it(tmp_path, capsys, content, name, expected):
    config = tmp_path / name
    config.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        train_unet.main(["--config", str(config)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and f"--config {config}" in error_lines[0] and expected in error_lines[0], err
    assert "Traceback" not in err


def test_missing_file_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train.main(["--config", str(tmp_path / "nope.toml")])
    assert "no such file" in capsys.readouterr().err


def test_saved_config_reruns_the_run_exactly_into_a_new_folder(tmp_path):
    data = write_tiny_clip_dataset(tmp_path / "data", num_train=8, num_validation=4, image_size=32)
    first = tmp_path / "first"
    assert train_vae.main(["--data", str(data), "--out", str(first), "--max-steps", "2", "--batch-size", "4",
                           "--lr", "3e-3", "--seed", "7", "--kl-weight", "1e-5", "--checkpoint-every", "0"]) == 0
    second = tmp_path / "second"
    assert train_vae.main(["--config", str(first / "latentdiff_config.json"), "--out", str(second)]) == 0
    saved = [json.loads((out / "latentdiff_config.json").read_text())["config"] for out in (first, second)]
    assert saved[1] == {**saved[0], "out": str(second)}
    weights = [load_file(out / "diffusion_pytorch_model.safetensors") for out in (first, second)]
    assert all((weights[0][k] == weights[1][k]).all() for k in weights[0])  # the same run, bit for bit


def test_help_shows_each_stage_real_defaults(capsys):
    for main, table in ((train_clip.main, CLIP_PRESETS), (train_vae.main, VAE_PRESETS), (train_unet.main, UNET_PRESETS)):
        scratch, finetune = table["tiny"].scratch, table["tiny"].finetune
        with pytest.raises(SystemExit):
            main(["--help"])
        text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
        assert "the stage's" not in text and "--config FILE" in text
        for name in ("lr", "batch_size", "epochs", "ema_decay"):
            assert f"(default: {getattr(scratch, name):g} from scratch, {getattr(finetune, name):g} with --init)" in text
    with pytest.raises(SystemExit):
        train.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "train-clip 30, align-text 20, train-vae 5, train-unet 20" in text
