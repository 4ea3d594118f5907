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


def _eight_steps(out):
    return TrainConfig(data="unused", out=str(out), max_steps=8, batch_size=4, lr=1e-2, epochs=1,
                       checkpoint_every=4, mixed_precision="no")


def _failing_after(real_save, good_calls: int, error: Exception):
    """`real_save`, except that calls after the first `good_calls` write a partial file and raise `error`."""
    calls = {"n": 0}

    def save(obj, path):
        calls["n"] += 1
        if calls["n"] > good_calls:
            path.write_bytes(b"partial")
            raise error
        real_save(obj, path)

    return save


def test_a_failed_write_during_training_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    cfg = _eight_steps(tmp_path)
    real_save = checkpoint.save_module_weights
    # the second checkpoint hits a full disk halfway through
    failing_save = _failing_after(real_save, 1, OSError(errno.ENOSPC, "No space left on device"))
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


def _disk_full_errors():
    """How each writer reports a full disk: Python's own writes, safetensors, and torch.save (whose
    message never mentions the disk, so only the free space tells)."""
    from safetensors import SafetensorError

    return {
        "oserror": OSError(errno.ENOSPC, "No space left on device"),
        "safetensors": SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),
        "torch.save": RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"),
    }


@pytest.mark.parametrize("writer", ["oserror", "safetensors", "torch.save"])
def test_a_full_disk_during_a_checkpoint_names_the_device_and_the_size_and_leaves_no_temp_folder(tmp_path, monkeypatch, writer):
    from latentdiff import disk_space

    cfg = _eight_steps(tmp_path)
    real_save = checkpoint.save_torch_state
    # the second checkpoint (an rng and an optimizer file each) hits a full disk halfway through
    monkeypatch.setattr(checkpoint, "save_torch_state", _failing_after(real_save, 2, _disk_full_errors()[writer]))
    if writer == "torch.save":  # nothing in the error says "disk": the free space does
        monkeypatch.setattr(disk_space, "free_bytes", lambda path: 1000)
    with pytest.raises(UserError, match=r"^No space left on \S+.* for the checkpoint of step 8 in .*training_state; "
                                        r"about \d+ MB needed.*step 4 is intact.*rerun the same command"):
        train(ToyTask(), cfg, tmp_path)
    assert not list(checkpoint.state_dir(tmp_path).glob(".tmp-*"))  # the failed write no longer fills the disk
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path)] == [4]
    monkeypatch.setattr(checkpoint, "save_torch_state", real_save)
    monkeypatch.undo()
    reference = tmp_path / "reference"
    train(ToyTask(), TrainConfig(**{**cfg.__dict__, "out": str(reference)}), reference)
    assert train(ToyTask(), cfg, tmp_path).step == 8  # resumes from step 4 once there is room
    assert (tmp_path / "toy.safetensors").read_bytes() == (reference / "toy.safetensors").read_bytes()


def test_a_full_disk_during_the_export_removes_what_it_wrote_and_a_rerun_exports(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    cfg = TrainConfig(data="unused", out=str(tmp_path), max_steps=4, batch_size=4, lr=1e-2, epochs=1,
                      checkpoint_every=4, mixed_precision="no")

    def full_disk_export(self, model, out_dir):
        (out_dir / "unet").mkdir()
        (out_dir / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"partial")
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(ToyTask, "export", full_disk_export)
    with pytest.raises(UserError, match=r"^No space left on \S+.* for the exported toy model in .*; about \d+ MB needed"
                                        r".*state of step 4 is saved.*rerun the same command to export it"):
        train(ToyTask(), cfg, tmp_path)
    assert not (tmp_path / "unet").exists() and not checkpoint.is_stage_complete(tmp_path)
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path)] == [4]
    monkeypatch.undo()
    assert train(ToyTask(), cfg, tmp_path).step == 4 and checkpoint.is_stage_complete(tmp_path)
    assert (tmp_path / "toy.safetensors").is_file()
