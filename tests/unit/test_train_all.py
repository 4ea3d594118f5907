"""`latentdiff train`'s orchestration: stage order, folders, options handed down, skipping finished
stages, and bad input refused before the first stage trains. The stages' `run` functions are replaced by
recorders here (the real chain is tests/e2e/test_train_chain.py)."""

from __future__ import annotations

import pytest

from helpers.clip_data import keep_english_captions, write_tiny_clip_dataset
from latentdiff.checkpoint import is_stage_complete, mark_stage_complete
from latentdiff.config import TrainAllConfig
from latentdiff.errors import UserError
from latentdiff.stages import align_text, train, train_clip, train_unet, train_vae


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
    monkeypatch.setattr(align_text, "run", recorder("align"))
    monkeypatch.setattr(train_vae, "run", recorder("vae"))
    monkeypatch.setattr(train_unet, "run", recorder("unet"))
    return recorded


def test_stages_run_in_order_into_the_run_folder_with_shared_options(tmp_path, calls):
    # English and Chinese captions: the CLIP's text encoder is aligned across them before the U-Net uses it
    data = write_tiny_clip_dataset(tmp_path / "data", num_train=8, num_validation=2, image_size=32)
    run = tmp_path / "run"
    train.run(TrainAllConfig(data=str(data), out=str(run), preset="tiny", seed=7, max_steps=5, vae_max_steps=9,
                             batch_size=4))
    assert [name for name, _ in calls] == ["clip", "align", "vae", "unet"]
    clip, align, vae, unet = (cfg for _, cfg in calls)
    assert (clip.out, align.out, vae.out, unet.out) == (str(run / "clip"), str(run / "clip-aligned"), str(run / "vae"),
                                                        str(run / "pipeline"))
    assert align.clip == str(run / "clip")
    assert (unet.clip, unet.vae) == (str(run / "clip-aligned"), str(run / "vae"))  # the aligned text encoder
    assert (clip.max_steps, align.max_steps, vae.max_steps, unet.max_steps) == (5, 5, 9, 5)
    assert {cfg.seed for cfg in (clip, align, vae, unet)} == {7}
    assert {cfg.batch_size for cfg in (clip, align, vae, unet)} == {4}
    assert {cfg.data for cfg in (clip, align, vae, unet)} == {str(data)}
    assert vae.lr is None and vae.epochs is None  # unset options keep each stage's own default
    assert align.lr == 5e-4  # align-text's own recipe
    assert (run / "latentdiff_config.json").is_file()


def test_one_caption_language_or_no_align_text_trains_the_u_net_on_the_clip_itself(tmp_path, calls):
    data = write_tiny_clip_dataset(tmp_path / "data", num_train=8, num_validation=2, image_size=32)
    train.run(TrainAllConfig(data=str(data), out=str(tmp_path / "run"), max_steps=2, align_text=False))
    assert [name for name, _ in calls] == ["clip", "vae", "unet"]
    assert calls[-1][1].clip == str(tmp_path / "run" / "clip")

    calls.clear()
    keep_english_captions(data)  # the same images with their English captions only
    train.run(TrainAllConfig(data=str(data), out=str(tmp_path / "run-en"), max_steps=2))
    assert [name for name, _ in calls] == ["clip", "vae", "unet"]


def test_finished_stages_are_skipped_and_the_rest_run(tmp_path, calls, capsys):
    data = write_tiny_clip_dataset(tmp_path / "data", num_train=8, num_validation=2, image_size=32)
    run = tmp_path / "run"
    mark_stage_complete(run / "clip", {"task": "clip"})  # an earlier `train` got past CLIP, then stopped
    train.run(TrainAllConfig(data=str(data), out=str(run), max_steps=2))
    assert [name for name, _ in calls] == ["align", "vae", "unet"]
    assert "train-clip" in capsys.readouterr().out
    calls.clear()
    train.run(TrainAllConfig(data=str(data), out=str(run), max_steps=2))
    assert calls == []
    assert all(is_stage_complete(run / name) for name in ("clip", "clip-aligned", "vae", "pipeline"))


def test_bad_input_is_refused_before_any_stage(tmp_path, calls):
    (tmp_path / "photos").mkdir()
    with pytest.raises(UserError, match="not a prepared dataset"):
        train.run(TrainAllConfig(data=str(tmp_path / "photos"), out=str(tmp_path / "run")))
    odd = write_tiny_clip_dataset(tmp_path / "odd", num_train=8, num_validation=2, image_size=30)
    with pytest.raises(UserError, match="multiple of 4"):
        train.run(TrainAllConfig(data=str(odd), out=str(tmp_path / "run2"), preset="tiny"))
    assert calls == []
    assert train.main(["--data", str(tmp_path / "photos"), "--out", str(tmp_path / "run3")]) == 2


def test_a_run_whose_u_net_started_on_the_clip_itself_keeps_it(tmp_path, calls):
    # A run begun before `train` aligned caption languages: its U-Net resumes on RUN/clip, as it started.
    data = write_tiny_clip_dataset(tmp_path / "data", num_train=8, num_validation=2, image_size=32)
    run = tmp_path / "run"
    for name in ("clip", "vae"):
        mark_stage_complete(run / name, {"task": name})
    (run / "pipeline" / "training_state").mkdir(parents=True)
    train.run(TrainAllConfig(data=str(data), out=str(run), max_steps=2))
    assert [name for name, _ in calls] == ["unet"]
    assert calls[0][1].clip == str(run / "clip")
