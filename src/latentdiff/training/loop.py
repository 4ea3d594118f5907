"""The one training loop, shared by every stage (see `latentdiff.training.task` for the task contract).

    train(task, cfg, out_dir)

accelerate provides the device, mixed precision, gradient accumulation and multi-process (DDP; gloo on
CPU via `accelerate launch --multi_gpu --num_processes 2`, which works without GPUs). Around it: AdamW (no weight decay on 1-D parameters,
as open_clip), diffusers' LR schedules with linear warmup, gradient clipping, optional EMA, validation and
checkpoints every N optimizer steps, a tqdm bar (loss, samples/s, ETA), TensorBoard under `out_dir/logs`,
and a clean stop if the loss or the gradient norm stops being finite.

Resume: if `out_dir/training_state/` holds a checkpoint, every piece of state is restored from it (weights,
optimizer, scheduler, EMA, every RNG, data position, step), so a run killed at any moment and rerun ends
with weights bit-identical (on CPU) to a run that was never interrupted (run_checkpoints.py).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from diffusers.optimization import get_scheduler
from PIL import Image
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from latentdiff import checkpoint, disk_space
from latentdiff.config import TrainConfig
from latentdiff.errors import UserError
from latentdiff.runtime import (mixed_precision_for, pick_device, seed_everything,
                               warn_if_cpu_launch_started_one_process)
from latentdiff.training import ema as ema_lib
from latentdiff.training.data_order import BatchStream, StreamPosition, batches_per_epoch
from latentdiff.training.gpu_options import apply_training_options
from latentdiff.training.interrupt import StopRequests, TrainingInterrupted
from latentdiff.training.optim import make_optimizer
from latentdiff.training.run_checkpoints import RunCheckpoints
from latentdiff.training.task import TrainingTask
from latentdiff.training.time_budget import TimeBudget

# Seeds of the per-process loop generators are spaced so processes never share a stream.
GENERATOR_SEED_STRIDE = 1_000_003


class TrainingDiverged(UserError):
    """The loss or the gradients became NaN/inf: training stopped, the last good checkpoint is kept."""


@dataclass
class TrainResult:
    step: int
    last_loss: float
    metrics: dict[str, float]
    finished: bool = True  # False: stopped at --stop-at-step, nothing exported


def plan_steps(cfg: TrainConfig, num_items: int, world_size: int) -> int:
    """Optimizer steps of the run: --max-steps, or --epochs passes over the (sharded) training split."""
    if cfg.max_steps > 0:
        return cfg.max_steps
    per_epoch = batches_per_epoch(num_items, cfg.batch_size, world_size)
    return max(1, math.ceil((cfg.epochs or 1) * per_epoch / cfg.grad_accum_steps))


def _check_config(cfg: TrainConfig) -> None:
    for name in ("batch_size", "lr", "epochs"):
        if getattr(cfg, name) is None:
            raise ValueError(f"TrainConfig.{name} is None: the stage must call cfg.with_defaults(...) first")
    if cfg.batch_size < 1 or cfg.grad_accum_steps < 1:
        raise UserError("--batch-size and --grad-accum-steps must be at least 1.")
    if not 0 <= cfg.ema_decay < 1:
        raise UserError(f"--ema-decay must be in [0, 1) (got {cfg.ema_decay}); 0.999 is a common choice.")
    if cfg.lr <= 0:
        raise UserError(f"--lr must be positive (got {cfg.lr}).")
    if cfg.max_minutes < 0:
        raise UserError(f"--max-minutes must be 0 (no time budget) or positive (got {cfg.max_minutes}).")
    if cfg.stop_at_step < 0:
        raise UserError(f"--stop-at-step must be 0 (train to the end) or a step number (got {cfg.stop_at_step}).")
    if cfg.stop_at_step and cfg.max_minutes:
        # --max-minutes fixes the step count from the speed it measures, which a stopped and resumed run measures
        # again: the schedule would not be the one a run that never stopped follows.
        raise UserError("--stop-at-step and --max-minutes cannot be combined (a time budget refits the schedule "
                        "when the run resumes); give the schedule's length with --max-steps instead.")


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


class _Run(RunCheckpoints):
    """State of one call to `train`; split in methods so each piece reads in one screen."""

    def __init__(self, task: TrainingTask, cfg: TrainConfig, out_dir: Path):
        self.task, self.cfg, self.out_dir = task, cfg, out_dir
        device = pick_device()
        precision = cfg.mixed_precision
        if precision == "auto":
            precision = mixed_precision_for(device)
        # cpu=True on machines without an accelerator: that is what makes accelerate join processes
        # started by torchrun / `accelerate launch --multi_gpu` into one gloo group (MULTI_CPU);
        # without it each process would train alone and they would overwrite each other's files.
        self.accelerator = Accelerator(mixed_precision=precision, gradient_accumulation_steps=cfg.grad_accum_steps,
                                       cpu=device.type == "cpu")
        self.rank, self.world_size = self.accelerator.process_index, self.accelerator.num_processes
        warn_if_cpu_launch_started_one_process(self.world_size)
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        if launched != self.world_size:
            raise UserError(f"{launched} processes were launched but accelerate formed a group of {self.world_size}; "
                            f"launch with `accelerate launch --multi_gpu --num_processes N` (or torchrun) instead.")
        seed_everything(cfg.seed + self.rank)
        self.generator = torch.Generator("cpu").manual_seed(cfg.seed + GENERATOR_SEED_STRIDE * (self.rank + 1))
        # On the device before the optimizer exists, so its state (and a resumed one) lives there too.
        self.model = task.trainable_module().to(self.accelerator.device)
        apply_training_options(self.model, cfg.gradient_checkpointing, cfg.compile)
        self.dataset = task.train_dataset()
        self.num_steps = plan_steps(cfg, len(self.dataset), self.world_size)
        self.step_limit = self.num_steps  # --max-minutes never trains past what --max-steps/--epochs allow
        self.optimizer = make_optimizer(self.model, cfg)
        self.budget = TimeBudget(cfg.max_minutes)
        self.scheduler = self._lr_scheduler()
        self.ema = ema_lib.make_ema(self.model, cfg.ema_decay)
        self.step = 0
        self.position = StreamPosition()
        self.last_saved_step: int | None = None
        self.resume()
        self._check_stop_step()
        # The scheduler is stepped by hand once per optimizer step (accelerate's wrapper would step it
        # num_processes times per step).
        self.model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
        self.stream = BatchStream(self.dataset, task.collate, cfg.batch_size, cfg.seed, self.rank, self.world_size,
                                  num_workers=cfg.num_workers, position=self.position)

    def _summary(self, samples_per_step: int) -> str:
        cfg = self.cfg
        # Passes as the data order counts them (whole batches per shard), so --epochs N reads back as N.
        passes = self.num_steps * cfg.grad_accum_steps / batches_per_epoch(len(self.dataset), cfg.batch_size,
                                                                            self.world_size)
        length = f"{self.num_steps:,} steps (about {passes:.1f} passes)"
        if not self.budget.steps_fixed:
            length = f"at most {length}, --max-minutes {cfg.max_minutes:g} fixes the count once timed"
        start = f", resuming at step {self.step}" if self.step else ""
        return (f"[{self.task.name}] {len(self.dataset):,} training items; batch {cfg.batch_size} x "
                f"{cfg.grad_accum_steps} accumulation x {self.world_size} process(es) = {samples_per_step} per step; "
                f"{length}; peak lr {cfg.lr:g} ({cfg.lr_scheduler}, {cfg.warmup_steps} warm-up steps){start}")

    def _lr_scheduler(self):
        # diffusers' "constant" ignores num_warmup_steps; "constant_with_warmup" is the constant schedule with them
        name = "constant_with_warmup" if self.cfg.lr_scheduler == "constant" and self.cfg.warmup_steps else \
            self.cfg.lr_scheduler
        return get_scheduler(name, self.optimizer, num_warmup_steps=self.cfg.warmup_steps,
                             num_training_steps=self.num_steps)

    def _fix_num_steps(self, num_steps: int) -> None:
        """Set the run's length (a --max-minutes run, once timed): the LR schedule is rebuilt for it at the
        current step, so the cosine still reaches its end on the last step."""
        state = self.scheduler.state_dict()
        self.num_steps, self.budget.steps_fixed = num_steps, True
        self.scheduler = self._lr_scheduler()  # a new LambdaLR sets each group's lr to its step-0 value ...
        self.scheduler.load_state_dict(state)  # ... which loading the position back does not undo:
        position = self.scheduler.last_epoch  # the next step's lr is the new schedule's at this position
        lrs = [base * schedule(position) for base, schedule in zip(self.scheduler.base_lrs, self.scheduler.lr_lambdas)]
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self.scheduler._last_lr = lrs  # what get_last_lr() reports; torch keeps no public setter

    def _follow_time_budget(self, steps_this_run: int, started: float, now: float) -> bool:
        """--max-minutes: set the step count when the budget says it is time (time_budget.py); the same
        count on every process. True when the count was set again."""
        if not self.budget.timing_due(steps_this_run, self.step, now, seconds_so_far=now - started,
                                      agreed=lambda due: self._any_process(torch.tensor(float(due)))):
            return False
        wanted, steps_per_second = self.budget.steps_that_fit(self.step, now - started, now)
        budget = torch.tensor(float(wanted), device=self.accelerator.device)
        if self.world_size > 1:
            # the smallest count of all processes (accelerate's reduce knows sum, mean and max, not min)
            budget = -self.accelerator.reduce(-budget, reduction="max")
        num_steps = max(self.step, min(self.step_limit, int(budget.item())))  # == step: the budget is spent
        self._fix_num_steps(num_steps)
        if self.accelerator.is_main_process:
            tqdm.write(f"[{self.task.name}] --max-minutes {self.cfg.max_minutes:g}: "
                       f"{steps_per_second:.2f} steps/s, so the run ends at step {num_steps}")
        return True

    # ---------------------------------------------------------------- validation / export

    def validate(self, writer) -> dict[str, float]:
        acc = self.accelerator
        metrics: dict[str, float] = {}
        if acc.is_main_process:
            model = acc.unwrap_model(self.model)
            rng = checkpoint.capture_rng_state(self.generator)  # validation must not shift training's draws
            model.eval()
            try:
                with torch.no_grad(), ema_lib.ema_weights(self.ema, model):
                    metrics = self.task.validate(model, self.step, self.out_dir) or {}
            finally:
                model.train()
                checkpoint.restore_rng_state(rng, self.generator)
            # Pictures (sample / reconstruction grids) go to TensorBoard's Images tab beside the PNGs.
            grids = {key: metrics.pop(key) for key in [k for k, v in metrics.items() if isinstance(v, Image.Image)]}
            for key, grid in grids.items():
                writer.add_image(f"val/{key}", np.asarray(grid.convert("RGB")), self.step, dataformats="HWC")
            for key, value in metrics.items():
                writer.add_scalar(f"val/{key}", value, self.step)
            shown = ", ".join(f"{k}={v:.4g}" for k, v in list(metrics.items())[:6])
            tqdm.write(f"[{self.task.name}] step {self.step}: {shown}")  # above the progress bar, not through it
        acc.wait_for_everyone()
        return metrics

    def export(self) -> None:
        acc = self.accelerator
        if acc.is_main_process:
            model = acc.unwrap_model(self.model)
            model.eval()
            if self.ema is not None:
                self.ema.copy_to(model.parameters())
            self._export_or_clean_up(model)
            checkpoint.mark_stage_complete(self.out_dir, {"task": self.task.name, "step": self.step})
        acc.wait_for_everyone()

    def _export_or_clean_up(self, model: torch.nn.Module) -> None:
        """`task.export`; if it fails, what it had written is deleted (a full disk is not kept full), and a
        full disk is told as one sentence. The final training state is already saved, so a rerun exports."""
        before = {entry.name for entry in self.out_dir.iterdir()}
        try:
            self.task.export(model, self.out_dir)
        except Exception as err:
            # everything the artefact holds: the trained module and the frozen ones the task keeps
            modules = [model, *(v for v in vars(self.task).values() if isinstance(v, torch.nn.Module))]
            needed = checkpoint.tensor_bytes(*modules)
            full = disk_space.is_disk_full(err, self.out_dir, needed)
            disk_space.remove_new_entries(self.out_dir, before)
            if not full:
                raise
            sentence = disk_space.no_space_sentence(self.out_dir, f"the exported {self.task.name} model in {self.out_dir}", needed)
            raise UserError(f"{sentence}; the training state of step {self.step} is saved: free some space, "
                            f"then rerun the same command to export it.") from None

    # ---------------------------------------------------------------- the loop

    def _any_process(self, flag: torch.Tensor) -> bool:
        """True if `flag` is set on any process: every process must take the same branch (stop or go
        on), or the others would wait forever in the next collective operation."""
        flag = flag.reshape(1).to(self.accelerator.device, torch.float32)
        if self.world_size > 1:
            flag = self.accelerator.reduce(flag, reduction="sum")
        return bool(flag.item() > 0)

    def _stop_diverged(self, what: str, value: float) -> None:
        where = (f"the last good checkpoint (step {self.last_saved_step}) is kept under {checkpoint.state_dir(self.out_dir)}"
                 if self.last_saved_step is not None else "no checkpoint had been written yet")
        raise TrainingDiverged(f"Training stopped at step {self.step + 1}: the {what} became {value}; {where}. "
                               f"Lower --lr (now {self.cfg.lr:g}) or raise --warmup-steps, then rerun with a new --out.")

    def _save_unless_saved(self) -> Path:
        """The current step's checkpoint, written now unless it just was; returns its folder."""
        if self.last_saved_step != self.step:
            self.save_checkpoint()
        return checkpoint.state_dir(self.out_dir) / checkpoint.checkpoint_name(self.step)

    def _export_checkpoint_hint(self, step: int | None = None) -> str:
        """How to write a pipeline of a saved step: only train-unet runs have `latentdiff export-checkpoint`."""
        if self.task.name != "unet":
            return ""
        at = f" --step {step}" if step is not None else ""
        return f"`latentdiff export-checkpoint {self.out_dir}{at} --out DIR` writes "

    def _stop_interrupted(self, signal_name: str) -> None:
        """After SIGINT/SIGTERM: the step in progress has finished; save it (unless just saved), stop."""
        latest = self._save_unless_saved()
        raise TrainingInterrupted(f"stopped by {signal_name} after step {self.step} of {self.num_steps}; the training "
                                  f"state is saved in {latest}: rerun the same command to resume from there.")

    def _optimizer_step(self) -> tuple[torch.Tensor, dict[str, float]]:
        """One optimizer step over cfg.grad_accum_steps micro-batches; returns the mean loss (a 0-dim tensor, still
        on the device) and the task's last logs. Stops the run if the loss or the gradient norm is not finite."""
        acc, cfg = self.accelerator, self.cfg
        logs: dict[str, float] = {}
        total = torch.zeros((), device=acc.device)
        for _ in range(cfg.grad_accum_steps):
            batch = _to_device(next(self.stream), acc.device)
            with acc.accumulate(self.model):
                with acc.autocast():
                    loss, logs = self.task.loss(self.model, batch, self.generator)
                if self._any_process(~torch.isfinite(loss.detach())):
                    self._stop_diverged("loss", float(loss.detach()))
                acc.backward(loss)
                total += loss.detach() / cfg.grad_accum_steps
                if acc.sync_gradients:
                    grad_norm = (acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                                 if cfg.max_grad_norm > 0 else None)
                    if grad_norm is not None and not torch.isfinite(torch.as_tensor(grad_norm)):
                        self._stop_diverged("gradient norm", float(grad_norm))
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.step(acc.unwrap_model(self.model).parameters())
        return total, logs

    def _log_step(self, writer, loss: float, samples_per_s: float, logs: dict[str, float]) -> None:
        writer.add_scalar("train/loss", loss, self.step)
        writer.add_scalar("train/lr", self.scheduler.get_last_lr()[0], self.step)
        writer.add_scalar("train/samples_per_s", samples_per_s, self.step)
        for key, value in logs.items():
            writer.add_scalar(f"train/{key}", float(value), self.step)

    def _check_stop_step(self) -> None:
        stop = self.cfg.stop_at_step
        if stop and stop >= self.num_steps:
            raise UserError(f"--stop-at-step {stop} is not before the end of the schedule ({self.num_steps} steps); "
                            f"leave it out to train to the end.")
        if 0 < stop < self.step:
            hint = self._export_checkpoint_hint(stop)
            look = f"{hint}that step's pipeline if its checkpoint is still kept; " if hint else ""
            raise UserError(f"--stop-at-step {stop} is behind this run, which is already at step {self.step}; {look}"
                            f"leave --stop-at-step out (or give a later step) to go on.")

    def _at_stop_step(self) -> bool:
        return 0 < self.cfg.stop_at_step <= self.step

    def _stop_at_step(self) -> None:
        saved = self._save_unless_saved()
        if self.accelerator.is_main_process:
            hint = self._export_checkpoint_hint()
            look = f"; {hint}its pipeline" if hint else ""
            tqdm.write(f"[{self.task.name}] stopped at step {self.step} of {self.num_steps} (--stop-at-step), its "
                       f"training state saved in {saved}: rerun the same command without --stop-at-step (or with a "
                       f"later step) to go on{look}.")

    def run(self) -> TrainResult:
        acc, cfg = self.accelerator, self.cfg
        writer = SummaryWriter(str(self.out_dir / "logs"), purge_step=self.step) if acc.is_main_process else None
        samples_per_step = cfg.batch_size * cfg.grad_accum_steps * self.world_size
        if acc.is_main_process:
            # What diffusers' example scripts log as "***** Running training *****": the numbers a continuation
            # run inherits from defaults (--init's batch differs from a from-scratch one) are seen before it runs.
            tqdm.write(self._summary(samples_per_step))
        bar = tqdm(total=self.num_steps, initial=self.step, desc=f"train {self.task.name}", unit="step",
                   disable=not acc.is_main_process, dynamic_ncols=True)
        self.model.train()
        last_loss, metrics, started = float("nan"), {}, time.perf_counter()
        steps_this_run = 0
        try:
            with StopRequests() as stop:
                while self.step < self.num_steps and not self._at_stop_step():
                    total, logs = self._optimizer_step()
                    self.step += 1
                    steps_this_run += 1
                    last_loss = float(acc.reduce(total, reduction="mean")) if self.world_size > 1 else float(total)
                    now = time.perf_counter()
                    rate = steps_this_run * samples_per_step / max(now - started, 1e-9)
                    if self._follow_time_budget(steps_this_run, started, now):
                        bar.total = self.num_steps
                    bar.set_postfix(loss=f"{last_loss:.4f}", samples_s=f"{rate:.1f}", refresh=False)
                    bar.update(1)
                    if writer is not None:
                        self._log_step(writer, last_loss, rate, logs)
                    final = self.step >= self.num_steps
                    if cfg.validate_every > 0 and self.step % cfg.validate_every == 0 and not final:
                        metrics = self.validate(writer)
                    if (cfg.checkpoint_every > 0 and self.step % cfg.checkpoint_every == 0) or final:
                        self.save_checkpoint()
                    if self._any_process(torch.tensor(float(stop.requested))):
                        self._stop_interrupted(stop.signal_name or "a stop signal")
            bar.close()
            if self.step < self.num_steps:  # --stop-at-step: the state is saved, the schedule goes on when rerun
                self._stop_at_step()
                return TrainResult(step=self.step, last_loss=last_loss, metrics=metrics, finished=False)
            metrics = self.validate(writer)
            self.export()
        finally:
            # Closed on every way out (diverged, full disk, interrupted): a bar left to the garbage collector can
            # leave tqdm's instance set while a later bar's tqdm.write walks it ("Set changed size during
            # iteration", tqdm#481), which broke the next run in the same process.
            bar.close()
            if writer is not None:
                writer.close()
        return TrainResult(step=self.step, last_loss=last_loss, metrics=metrics)


def train(task: TrainingTask, cfg: TrainConfig, out_dir: str | Path) -> TrainResult:
    """Train `task` with `cfg` into `out_dir` (resuming if it holds a checkpoint), then export."""
    _check_config(cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = _Run(task, cfg, out_dir)
    return run.run()


