"""Checkpoints of a training run: writing the complete state every N steps, and resuming from the latest.

`RunCheckpoints` is the part of the loop's `_Run` (loop.py) that owns `out_dir/training_state/`: the weights,
optimizer and LR scheduler, EMA, every RNG, each process's data position and the step, written so that a run
killed at any moment and rerun ends bit-identical (on CPU) to one never interrupted. It reads the run's
attributes (`cfg`, `out_dir`, `task`, `accelerator`, `model`, `optimizer`, `scheduler`, `ema`, `generator`,
`budget`, `stream`, `rank`, `world_size`, `step`, `num_steps`) and sets `step`, `position` and `last_saved_step`.
The file layout and the atomic write/commit are `latentdiff.checkpoint`'s.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from latentdiff import checkpoint, disk_space
from latentdiff.errors import UserError
from latentdiff.options import config_to_dict
from latentdiff.training import ema as ema_lib
from latentdiff.training.data_order import StreamPosition
from latentdiff.training.optim import check_optimizer_state

# Options that may change between an interrupted run and its resumption without changing the result.
# (--gradient-checkpointing recomputes the same numbers; --compile may round differently: keep it for bit-identity.)
RESUMABLE_CHANGES = frozenset({"out", "num_workers", "validate_every", "checkpoint_every", "keep_checkpoints", "allow_pickle",
                               "gradient_checkpointing", "compile", "stop_at_step"})


class RunCheckpoints:
    """Save and resume for `_Run` (see the module docstring for the attributes it uses)."""

    def _config_record(self) -> dict[str, Any]:
        """The options a resumed run must share with the interrupted one (paths compared resolved)."""
        record = {k: v for k, v in config_to_dict(self.cfg).items() if k not in RESUMABLE_CHANGES}
        for key in ("data", "init"):
            if record.get(key) and Path(record[key]).expanduser().exists():
                record[key] = str(Path(record[key]).expanduser().resolve())
        return record

    def resume(self) -> None:
        latest = checkpoint.latest_checkpoint(self.out_dir)
        if latest is None:
            return
        state = checkpoint.read_state(latest)
        saved, now = state["config"], self._config_record()
        # An option added after the run started is missing from its record: the run behaved as its default does
        # (new options default to the old behaviour), so it counts as that default.
        defaults = {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                    for f in dataclasses.fields(self.cfg)}
        changed = sorted(k for k in set(saved) | set(now)
                         if saved.get(k, defaults.get(k)) != now.get(k))
        if changed:
            raise UserError(f"{self.out_dir} holds an interrupted run started with different options "
                            f"({', '.join(changed)}); rerun with the same options to resume, or use a new --out.")
        if state["world_size"] != self.world_size:
            raise UserError(f"{self.out_dir} was being trained with {state['world_size']} process(es), not "
                            f"{self.world_size}; resume with the same number of processes or use a new --out.")
        if state.get("num_steps_fixed") and not self.budget.steps_fixed:
            # before the scheduler's state is loaded into it; a resumed run keeps the count it was given
            self._fix_num_steps(state["num_steps"])
            self.budget.retime = False
        try:
            self._load_state(latest, state)
        except Exception as err:  # corrupt or foreign files (weights_only=True already refuses code)
            raise self._damaged(latest, err) from None
        self.step = state["step"]
        self.position = StreamPosition(**state["positions"][self.rank])
        self.last_saved_step = self.step
        if self.accelerator.is_main_process:
            print(f"[{self.task.name}] resuming from {latest} (step {self.step} of {self.num_steps})", flush=True)

    def _load_state(self, latest: Path, state: dict[str, Any]) -> None:
        checkpoint.load_module_weights(self.model, latest / checkpoint.MODEL_FILE)
        opt_state = checkpoint.load_torch_state(latest / checkpoint.OPTIMIZER_FILE)
        self.optimizer.load_state_dict(opt_state["optimizer"])
        self.scheduler.load_state_dict(opt_state["scheduler"])
        check_optimizer_state(self.optimizer)
        if self.ema is not None:
            ema_lib.load_ema(self.ema, self.model, latest / checkpoint.EMA_FILE, state["ema"])
        checkpoint.restore_rng_state(checkpoint.load_torch_state(latest / f"rng-rank{self.rank}.pt"), self.generator)

    def _damaged(self, latest: Path, err: Exception) -> UserError:
        """One sentence for a checkpoint that cannot be loaded: which one, and the way out."""
        earlier = [step for step, path in checkpoint.list_checkpoints(self.out_dir) if path != latest]
        detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        way_out = (f"delete that folder to resume from step {earlier[-1]}, or use a new --out" if earlier else
                   "delete that folder to start the run over, or use a new --out")
        return UserError(f"The training state {latest} is damaged and cannot be resumed ({type(err).__name__}: "
                         f"{detail}); {way_out}.")

    def _checkpoint_bytes(self) -> int:
        """About what a checkpoint takes on disk: weights, optimizer state and (when on) the EMA copy."""
        model = self.accelerator.unwrap_model(self.model)
        ema_copies = 1 if self.ema is not None else 0
        return checkpoint.tensor_bytes(model, self.optimizer.state_dict()) + ema_copies * checkpoint.tensor_bytes(model)

    def save_checkpoint(self) -> None:
        """All processes call this; each writes its RNG state, the main process the rest, then commits.
        A failed write (disk full, permissions) removes the temporary folder and stops with a message;
        the previous checkpoint is never touched before the new one is complete."""
        acc = self.accelerator
        tmp = checkpoint.state_dir(self.out_dir) / f".tmp-{checkpoint.checkpoint_name(self.step)}"
        error: OSError | None = None
        if acc.is_main_process:
            try:
                tmp = checkpoint.begin_checkpoint(self.out_dir, self.step)
            except OSError as err:
                error = err
        acc.wait_for_everyone()
        position = torch.tensor([[self.stream.position.epoch, self.stream.position.batch_in_epoch]], device=acc.device)
        positions = acc.gather(position).tolist()  # (world_size, 2)
        if error is None and tmp.is_dir():
            try:
                self._write_state(tmp, positions)
                if acc.is_main_process:
                    checkpoint.fsync_tree(tmp)  # here, not in the commit: a full disk can surface in fsync
            except Exception as err:  # noqa: BLE001 - safetensors and torch.save report a full disk as non-OSErrors
                error = err
        failed = torch.tensor(0 if error is None else 1, device=acc.device)
        if self.world_size > 1:
            failed = acc.reduce(failed, reduction="sum")
        acc.wait_for_everyone()
        if int(failed) > 0:
            needed = self._checkpoint_bytes()
            full = error is not None and disk_space.is_disk_full(error, tmp.parent, needed)
            if acc.is_main_process:
                checkpoint.abort_checkpoint(tmp)
            previous = (f"the checkpoint of step {self.last_saved_step} is intact" if self.last_saved_step is not None
                        else "no earlier checkpoint exists")
            if full:
                what = f"the checkpoint of step {self.step} in {checkpoint.state_dir(self.out_dir)}"
                raise UserError(f"{disk_space.no_space_sentence(tmp.parent, what, needed)}; {previous}: "
                                f"free some space, then rerun the same command to resume.")
            if error is not None and not isinstance(error, OSError):
                raise error  # not a disk problem: a bug, shown as one (the temp folder is gone)
            reason = f" ({error})" if error is not None else ""
            raise UserError(f"Could not write the checkpoint of step {self.step} under {checkpoint.state_dir(self.out_dir)}"
                            f"{reason}; {previous}. Free disk space or fix permissions, then rerun the same command to resume.")
        if acc.is_main_process:
            checkpoint.commit_checkpoint(tmp, self.out_dir, self.step, self.cfg.keep_checkpoints)
        acc.wait_for_everyone()
        self.last_saved_step = self.step

    def _write_state(self, tmp: Path, positions: list[list[int]]) -> None:
        checkpoint.save_torch_state(checkpoint.capture_rng_state(self.generator), tmp / f"rng-rank{self.rank}.pt")
        if not self.accelerator.is_main_process:
            return
        model = self.accelerator.unwrap_model(self.model)
        checkpoint.save_module_weights(model, tmp / checkpoint.MODEL_FILE)
        checkpoint.save_torch_state({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()},
                                    tmp / checkpoint.OPTIMIZER_FILE)
        state = {"step": self.step, "num_steps": self.num_steps, "num_steps_fixed": self.budget.steps_fixed,
                 "world_size": self.world_size,
                 "positions": [{"epoch": e, "batch_in_epoch": b} for e, b in positions],
                 "config": self._config_record(), "task": self.task.name, "ema": None}
        if self.ema is not None:
            state["ema"] = ema_lib.save_ema(self.ema, model, tmp / checkpoint.EMA_FILE)
        checkpoint.write_state(tmp, state)
