"""Training state on disk: atomic commits, rotation, failed writes leave the previous checkpoint."""

from __future__ import annotations

import errno
import random

import numpy as np
import pytest
import torch
from helpers.toy_task import ToyTask

from latentdiff import checkpoint
from latentdiff.config import TrainConfig
from latentdiff.errors import UserError
from latentdiff.training.loop import train


def _write(out, step, payload=b"x", keep=2):
    tmp = checkpoint.begin_checkpoint(out, step)
    (tmp / "data.bin").write_bytes(payload)
    (tmp / checkpoint.STATE_FILE).write_text("{}")
    return checkpoint.commit_checkpoint(tmp, out, step, keep)


def test_commit_renames_into_place_and_keeps_the_last_k(tmp_path):
    for step in (10, 20, 30):
        _write(tmp_path, step, payload=str(step).encode())
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path)] == [20, 30]
    latest = checkpoint.latest_checkpoint(tmp_path)
    assert latest.name == "step-000030" and (latest / "data.bin").read_bytes() == b"30"
    assert not list(checkpoint.state_dir(tmp_path).glob(".tmp-*"))


def test_an_unfinished_temp_folder_is_never_taken_for_a_checkpoint(tmp_path):
    _write(tmp_path, 10)
    tmp = checkpoint.begin_checkpoint(tmp_path, 20)  # a crash mid-write leaves this behind
    (tmp / "data.bin").write_bytes(b"half")
    assert checkpoint.latest_checkpoint(tmp_path).name == "step-000010"
    _write(tmp_path, 30)  # the next write clears the leftovers
    assert not tmp.exists()


def test_a_failed_write_during_training_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    cfg = TrainConfig(data="unused", out=str(tmp_path), max_steps=8, batch_size=4, lr=1e-2, epochs=1,
                      checkpoint_every=4, mixed_precision="no")
    real_save = checkpoint.save_module_weights
    calls = {"n": 0}

    def failing_save(module, path):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint hits a full disk halfway through
            path.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(module, path)

    monkeypatch.setattr(checkpoint, "save_module_weights", failing_save)
    with pytest.raises(UserError, match=r"No space left.*step 4 is intact"):
        train(ToyTask(), cfg, tmp_path)
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path)] == [4]
    assert not list(checkpoint.state_dir(tmp_path).glob(".tmp-*"))
    model = ToyTask().model
    checkpoint.load_module_weights(model, checkpoint.latest_checkpoint(tmp_path) / checkpoint.MODEL_FILE)
    # and the run resumes from it once the disk has room again
    monkeypatch.setattr(checkpoint, "save_module_weights", real_save)
    assert train(ToyTask(), cfg, tmp_path).step == 8


def test_rng_state_round_trips_through_a_weights_only_load(tmp_path):
    gen = torch.Generator().manual_seed(5)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    checkpoint.save_torch_state(checkpoint.capture_rng_state(gen), tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1), torch.rand(1, generator=gen))
    random.seed(9), np.random.seed(9), torch.manual_seed(9), gen.manual_seed(9)
    checkpoint.restore_rng_state(checkpoint.load_torch_state(tmp_path / "rng.pt"), gen)
    assert (random.random(), np.random.rand(), torch.rand(1), torch.rand(1, generator=gen)) == expected


def test_stage_complete_marker(tmp_path):
    assert not checkpoint.is_stage_complete(tmp_path)
    checkpoint.mark_stage_complete(tmp_path, {"task": "x"})
    assert checkpoint.is_stage_complete(tmp_path)
