"""`latentdiff train`'s orchestration: stage order, folders, options handed down, skipping finished
stages, and bad input refused before the first stage trains. The stages' `run` functions are replaced by
recorders here (the real chain is tests/e2e/test_train_chain.py)."""

from __future__ import annotations

import pytest

from helpers.clip_data import write_tiny_clip_dataset
from latentdiff.checkpoint import is_stage_complete, mark_stage_complete
from latentdiff.config import TrainAllConfig
from latentdiff.errors import UserError
from latentdiff.stages import train, train_clip, train_unet, train_vae


@pytest.fixture
def calls(monkeypatch):
    """Each stage's run records its config and marks its folder complete, as a finished stage does."""
    recorded = []

    def recorder(name):
        def fake_run(cfg):
            recorded.append((name, cfg))
            mark_stage_complete(cfg.out, {"task": name})
        return fake_run

    monkeypatch.setattr(train_clip, "run", recorder("clip"))
    monkeypatch.setattr(train_vae, "run", recorder("vae"))
    monkeypatch.setattr(train_unet, "run", recorder("unet"))
    return recorded


def test_stages_run_in_order_into_the_run_folder_with_shared_options(tmp_path, calls):
    data = write_tiny_clip_dataset(tmp_path / "data", num_train=8, num_validation=2, image_size=32)
    run = tmp_path / "run"
    train.run(TrainAllConfig(data=str(data), out=str(run), preset="tiny", seed=7, max_steps=5, vae_max_steps=9,
                             batch_size=4))
    assert [name for name, _ in calls] == ["clip", "vae", "unet"]
    clip, vae, unet = (cfg for _, cfg in calls)
    assert (clip.out, vae.out, unet.out) == (str(run / "clip"), str(run / "vae"), str(run / "pipeline"))
    assert (unet.clip, unet.vae) == (str(run / "clip"), str(run / "vae"))
    assert (clip.max_steps, vae.max_steps, unet.max_steps) == (5, 9, 5)
    assert {cfg.seed for cfg in (clip, vae, unet)} == {7}
    assert {cfg.batch_size for cfg in (clip, vae, unet)} == {4}
    assert {cfg.data for cfg in (clip, vae, unet)} == {str(data)}
    assert vae.lr is None and vae.epochs is None  # unset options keep each stage's own default
    assert (run / "latentdiff_config.json").is_file()


def test_finished_stages_are_skipped_and_the_rest_run(tmp_path, calls, capsys):
    data = write_tiny_clip_dataset(tmp_path / "data", num_train=8, num_validation=2, image_size=32)
    run = tmp_path / "run"
    mark_stage_complete(run / "clip", {"task": "clip"})  # an earlier `train` got past CLIP, then stopped
    train.run(TrainAllConfig(data=str(data), out=str(run), max_steps=2))
    assert [name for name, _ in calls] == ["vae", "unet"]
    assert "train-clip" in capsys.readouterr().out
    calls.clear()
    train.run(TrainAllConfig(data=str(data), out=str(run), max_steps=2))
    assert calls == []
    assert all(is_stage_complete(run / name) for name in ("clip", "vae", "pipeline"))


def test_bad_input_is_refused_before_any_stage(tmp_path, calls):
    (tmp_path / "photos").mkdir()
    with pytest.raises(UserError, match="not a prepared dataset"):
        train.run(TrainAllConfig(data=str(tmp_path / "photos"), out=str(tmp_path / "run")))
    odd = write_tiny_clip_dataset(tmp_path / "odd", num_train=8, num_validation=2, image_size=30)
    with pytest.raises(UserError, match="multiple of 4"):
        train.run(TrainAllConfig(data=str(odd), out=str(tmp_path / "run2"), preset="tiny"))
    assert calls == []
    assert train.main(["--data", str(tmp_path / "photos"), "--out", str(tmp_path / "run3")]) == 2
