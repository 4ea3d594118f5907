"""The one training loop, on a toy task: resume is exact, NaN stops cleanly, export and marker."""

from __future__ import annotations

import io
import json
import math
import os
import signal

import pytest
import torch
from helpers.toy_task import ToyTask

from latentdiff import checkpoint
from latentdiff.config import TrainConfig
from latentdiff.errors import UserError
from latentdiff.options import run_reporting_errors
from latentdiff.training.loop import TrainingDiverged, _Run, plan_steps, train
from latentdiff.training.time_budget import RETIME_FRACTION, TIMING_SKIP_STEPS, TIMING_STEPS, TimeBudget


def _cfg(out, **kw):
    base = dict(data="unused", out=str(out), seed=3, max_steps=12, batch_size=4, lr=1e-2, epochs=1,
                warmup_steps=3, checkpoint_every=4, validate_every=5, keep_checkpoints=2, mixed_precision="no")
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("extra", [{}, {"ema_decay": 0.9, "grad_accum_steps": 2}], ids=["plain", "ema+accum"])
def test_crashed_and_resumed_run_is_bit_identical(tmp_path, extra):
    ref = tmp_path / "ref"
    train(ToyTask(), _cfg(ref, **extra), ref)
    resumed = tmp_path / "resumed"
    accum = extra.get("grad_accum_steps", 1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(ToyTask(crash_at_step=6 * accum + 1), _cfg(resumed, **extra), resumed)  # dies in step 7
    assert [s for s, _ in checkpoint.list_checkpoints(resumed)] == [4]
    assert not checkpoint.is_stage_complete(resumed)
    task = ToyTask()
    result = train(task, _cfg(resumed, **extra), resumed)
    assert result.step == 12 and task.exported == resumed
    assert (resumed / "toy.safetensors").read_bytes() == (ref / "toy.safetensors").read_bytes()
    assert checkpoint.is_stage_complete(resumed)
    assert [s for s, _ in checkpoint.list_checkpoints(resumed)] == [8, 12]  # the last 2 kept


def test_a_run_stopped_at_a_step_goes_on_along_the_same_schedule(tmp_path, capsys):
    ref = tmp_path / "ref"
    train(ToyTask(), _cfg(ref, ema_decay=0.9), ref)
    run = tmp_path / "run"
    task = ToyTask()
    result = train(task, _cfg(run, ema_decay=0.9, stop_at_step=6), run)  # between checkpoints (every 4)
    assert (result.step, result.finished, task.exported) == (6, False, None)
    assert [s for s, _ in checkpoint.list_checkpoints(run)] == [4, 6]  # its own step saved
    assert not checkpoint.is_stage_complete(run) and not (run / "toy.safetensors").exists()
    assert "stopped at step 6 of 12 (--stop-at-step)" in capsys.readouterr().out
    # the same stop again trains nothing; a later one, then none, go on
    assert train(ToyTask(), _cfg(run, ema_decay=0.9, stop_at_step=6), run).step == 6
    assert train(ToyTask(), _cfg(run, ema_decay=0.9, stop_at_step=10), run).step == 10
    result = train(ToyTask(), _cfg(run, ema_decay=0.9), run)
    assert (result.step, result.finished) == (12, True)
    assert (run / "toy.safetensors").read_bytes() == (ref / "toy.safetensors").read_bytes()  # as if never stopped


@pytest.mark.parametrize("stop, extra, message", [
    (12, {}, r"--stop-at-step 12 is not before the end of the schedule \(12 steps\)"),
    (6, {"max_minutes": 5.0}, r"cannot be combined.*--max-steps"),
    (-1, {}, r"must be 0 .* or a step number"),
], ids=["at-the-end", "time-budget", "negative"])
def test_a_stop_step_that_cannot_be_kept_is_refused_before_training(tmp_path, stop, extra, message):
    with pytest.raises(UserError, match=message):
        train(ToyTask(), _cfg(tmp_path, stop_at_step=stop, **extra), tmp_path)
    assert not checkpoint.list_checkpoints(tmp_path)


def test_a_stop_step_behind_the_run_is_refused_and_nothing_is_lost(tmp_path):
    train(ToyTask(), _cfg(tmp_path, stop_at_step=8), tmp_path)
    with pytest.raises(UserError, match=r"--stop-at-step 5 is behind this run, which is already at step 8"):
        train(ToyTask(), _cfg(tmp_path, stop_at_step=5), tmp_path)
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path)] == [4, 8]
    assert train(ToyTask(), _cfg(tmp_path), tmp_path).step == 12


def _ema_by_hand(raw_weights: list[dict[str, torch.Tensor]], decay: float) -> dict[str, torch.Tensor]:
    """EMA of the weights after each optimizer step, with diffusers' `EMAModel` schedule (no warm-up
    option): the first step copies the weights, step t > 1 uses min(decay, t / (9 + t))."""
    ema = {name: w.double().clone() for name, w in raw_weights[0].items()}
    for t, weights in enumerate(raw_weights[1:], start=2):
        d = min(decay, t / (9 + t))
        ema = {name: d * ema[name] + (1 - d) * weights[name].double() for name in ema}
    return ema


@pytest.mark.parametrize("accum", [1, 2])
def test_exported_weights_are_the_ema_of_the_trained_weights(tmp_path, accum):
    from safetensors.torch import load_file

    # a checkpoint after every step holds the raw (not averaged) weights of that step; with accumulation the
    # average moves once per optimizer step, not once per micro-batch
    cfg = _cfg(tmp_path, ema_decay=0.9, checkpoint_every=1, keep_checkpoints=100, grad_accum_steps=accum)
    train(ToyTask(), cfg, tmp_path)
    steps = checkpoint.list_checkpoints(tmp_path)
    assert [s for s, _ in steps] == list(range(1, 13))
    raw = [load_file(folder / checkpoint.MODEL_FILE) for _, folder in steps]
    exported = load_file(tmp_path / "toy.safetensors")
    expected = _ema_by_hand(raw, 0.9)
    assert exported.keys() == expected.keys()
    for name, weight in exported.items():
        torch.testing.assert_close(weight.double(), expected[name], rtol=0, atol=1e-6)
        assert not torch.allclose(weight, raw[-1][name], atol=1e-4)  # the average, not the last weights


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"nan.*step 4.*Lower --lr"):
        train(ToyTask(nan_at_step=6), _cfg(tmp_path), tmp_path)
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path)] == [4]
    assert not checkpoint.is_stage_complete(tmp_path)


def test_a_run_that_fails_closes_its_progress_bar(tmp_path):
    # A bar left open for the garbage collector can leave tqdm's instance set while the next run's tqdm.write
    # walks it ("Set changed size during iteration"): a notebook's second run after an error crashed.
    from tqdm.auto import tqdm

    open_before = len(getattr(tqdm, "_instances", ()))
    # The errors are kept, as a notebook keeps its last traceback: they hold the failed runs' frames alive.
    with pytest.raises(TrainingDiverged) as diverged:
        train(ToyTask(nan_at_step=6), _cfg(tmp_path / "nan"), tmp_path / "nan")
    with pytest.raises(RuntimeError) as crashed:
        train(ToyTask(crash_at_step=5), _cfg(tmp_path / "crash"), tmp_path / "crash")
    assert len(getattr(tqdm, "_instances", ())) == open_before, (diverged, crashed)
    assert train(ToyTask(), _cfg(tmp_path / "crash"), tmp_path / "crash").step == 12


def test_resuming_with_different_options_is_refused(tmp_path):
    with pytest.raises(RuntimeError):
        train(ToyTask(crash_at_step=5), _cfg(tmp_path), tmp_path)
    with pytest.raises(UserError, match="different options.*lr"):
        train(ToyTask(), _cfg(tmp_path, lr=0.5), tmp_path)


def test_a_run_started_before_an_option_existed_resumes_when_the_option_is_at_its_default(tmp_path):
    """A checkpoint written by an older latentdiff lacks the options added since; they count as their defaults."""
    with pytest.raises(RuntimeError):
        train(ToyTask(crash_at_step=5), _cfg(tmp_path), tmp_path)
    for step, folder in checkpoint.list_checkpoints(tmp_path):
        state_file = folder / checkpoint.STATE_FILE
        state = json.loads(state_file.read_text())
        del state["config"]["max_grad_norm"]  # as if the option came after the run started
        state_file.write_text(json.dumps(state))
    with pytest.raises(UserError, match=r"different options \(max_grad_norm\)"):
        train(ToyTask(), _cfg(tmp_path, max_grad_norm=0.5), tmp_path)  # not the default: not what the run did
    assert train(ToyTask(), _cfg(tmp_path), tmp_path).step == 12


def test_validation_and_logs_are_written(tmp_path):
    train(ToyTask(), _cfg(tmp_path), tmp_path)
    assert json.loads((tmp_path / "toy_metrics.json").read_text())["step"] == 12
    assert any((tmp_path / "logs").glob("events.out.tfevents.*"))


def test_plan_steps_from_epochs():
    # 40 items, batch 4 -> 10 batches per epoch; 3 epochs with accumulation 2 -> 15 steps
    assert plan_steps(_cfg("x", max_steps=0, epochs=3, grad_accum_steps=2), 40, 1) == 15
    assert plan_steps(_cfg("x", max_steps=0, epochs=1), 40, 2) == 5


def test_too_small_dataset_for_one_batch_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="fewer than one batch"):
        train(ToyTask(), _cfg(tmp_path, batch_size=64), tmp_path)


def test_the_run_states_its_batch_steps_and_lr_before_training(tmp_path, capsys):
    # A continuation inherits --init's defaults (batch 8, not 32): the first line says what the run will do.
    train(ToyTask(), _cfg(tmp_path, max_steps=6, batch_size=4, grad_accum_steps=2, lr=3e-3), tmp_path)
    captured = capsys.readouterr()
    assert "batch 4 x 2 accumulation x 1 process(es) = 8 per step; 6 steps" in captured.out + captured.err
    assert "peak lr 0.003 (cosine, 3 warm-up steps)" in captured.out + captured.err


def test_the_stated_passes_are_the_epochs_asked_for(tmp_path, capsys):
    train(ToyTask(), _cfg(tmp_path, max_steps=0, epochs=2, batch_size=4), tmp_path)
    captured = capsys.readouterr()
    assert "(about 2.0 passes)" in captured.out + captured.err


def test_dataloader_workers_do_not_change_the_result(tmp_path):
    train(ToyTask(), _cfg(tmp_path / "w0", max_steps=6), tmp_path / "w0")
    train(ToyTask(), _cfg(tmp_path / "w2", max_steps=6, num_workers=2), tmp_path / "w2")
    assert (tmp_path / "w0" / "toy.safetensors").read_bytes() == (tmp_path / "w2" / "toy.safetensors").read_bytes()


def test_max_minutes_fixes_the_step_count_from_the_measured_speed(tmp_path, capsys):
    # 0.01 minutes = 0.6 s: far fewer steps than the 10,000 allowed fit, so the timed count must stop the run
    # early, with the LR schedule rebuilt for that count (the cosine ends at 0 on the last step).
    result = train(ToyTask(), _cfg(tmp_path, max_steps=10_000, checkpoint_every=0, validate_every=0,
                                   max_minutes=0.01, lr_scheduler="cosine"), tmp_path)
    assert TIMING_STEPS <= result.step < 10_000
    captured = capsys.readouterr()
    assert f"the run ends at step {result.step}" in captured.out + captured.err
    assert "at most 10,000 steps" in captured.out + captured.err  # the first line, before the count is timed
    state = json.loads((checkpoint.list_checkpoints(tmp_path)[-1][1] / checkpoint.STATE_FILE).read_text())
    assert state["num_steps"] == result.step and state["num_steps_fixed"] is True


def test_a_run_whose_budget_is_spent_before_its_timing_ends_there(tmp_path, capsys):
    # 0.002 minutes = 0.12 s is spent by about step 6 of 20 ms steps, long before the timing at step 25 (0.5 s),
    # and every step outlasts a tenth of it: the run must end where the budget is spent, not train on to step 25
    # nor add one more step at each re-timing without end.
    cfg = _cfg(tmp_path, max_steps=200, checkpoint_every=0, validate_every=0, max_minutes=0.002, lr_scheduler="cosine")
    result = train(ToyTask(step_seconds=0.02), cfg, tmp_path)
    assert TIMING_SKIP_STEPS < result.step < TIMING_STEPS and result.finished
    captured = capsys.readouterr()
    assert f"so the run ends at step {result.step}" in captured.out + captured.err


def _cosine_with_warmup(position: int, warmup: int, num_steps: int) -> float:
    """The lr factor of diffusers' cosine schedule with warm-up after `position` scheduler steps."""
    if position < warmup:
        return position / max(1, warmup)
    progress = (position - warmup) / max(1, num_steps - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def _record_lrs(monkeypatch) -> list[tuple[float, int, int]]:
    """(lr the optimizer steps with, the run's step count then, the schedule's position) for every optimizer step."""
    used: list[tuple[float, int, int]] = []
    optimizer_step = _Run._optimizer_step

    def spy(run):
        used.append((run.optimizer.param_groups[0]["lr"], run.num_steps, run.scheduler.last_epoch))
        return optimizer_step(run)

    monkeypatch.setattr(_Run, "_optimizer_step", spy)
    return used


@pytest.mark.parametrize("warmup_steps", [3, 0])
def test_every_step_of_a_retimed_run_trains_at_its_schedules_lr(tmp_path, monkeypatch, warmup_steps):
    # A 0.6 s budget of 5 ms steps is re-timed about every 60 ms. Each re-timing rebuilds the cosine for the new
    # count; the step after it must train at that cosine's lr, not at the new schedule's step-0 value (0 with a
    # warm-up, the peak without one).
    used = _record_lrs(monkeypatch)
    peak = 1e-2
    cfg = _cfg(tmp_path, max_steps=10_000, checkpoint_every=0, validate_every=0, max_minutes=0.01, lr=peak,
               warmup_steps=warmup_steps, lr_scheduler="cosine")
    result = train(ToyTask(step_seconds=0.005), cfg, tmp_path)
    assert TIMING_STEPS < result.step < 10_000 and len(used) == result.step
    for lr, num_steps, position in used:
        assert lr == pytest.approx(peak * _cosine_with_warmup(position, warmup_steps, num_steps), abs=1e-12)


def test_a_constant_schedule_warms_up_first(tmp_path, monkeypatch):
    used = _record_lrs(monkeypatch)
    train(ToyTask(), _cfg(tmp_path, max_steps=6, checkpoint_every=0, validate_every=0, lr=1e-2, warmup_steps=3,
                          lr_scheduler="constant"), tmp_path)
    assert [lr for lr, _, _ in used] == pytest.approx([0.0, 1e-2 / 3, 2e-2 / 3, 1e-2, 1e-2, 1e-2])


def test_a_negative_time_budget_is_one_sentence(tmp_path):
    with pytest.raises(UserError, match="--max-minutes"):
        train(ToyTask(), _cfg(tmp_path, max_minutes=-1), tmp_path)


@pytest.mark.slow  # 6 s: runs against a wall-clock budget
def test_a_resumed_time_budget_run_keeps_its_step_count(tmp_path):
    cfg = _cfg(tmp_path, max_steps=10_000, checkpoint_every=5, validate_every=0, max_minutes=0.05)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(ToyTask(crash_at_step=33), cfg, tmp_path)  # timed at step 25, checkpoint at 30, dies in 33
    state = json.loads((checkpoint.list_checkpoints(tmp_path)[-1][1] / checkpoint.STATE_FILE).read_text())
    assert state["step"] == 30 and state["num_steps_fixed"]
    result = train(ToyTask(), cfg, tmp_path)
    assert result.step == state["num_steps"]  # not re-timed: the LR schedule the run started stays


class _SignalledTask(ToyTask):
    """Sends itself `signum` during loss call `at_call` (as Ctrl-C or `kill` would, mid-step)."""

    def __init__(self, signum, at_call):
        super().__init__()
        self.signum, self.at_call = signum, at_call

    def loss(self, model, batch, generator):
        if self.calls + 1 == self.at_call:
            os.kill(os.getpid(), self.signum)
        return super().loss(model, batch, generator)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("extra", [{}, {"ema_decay": 0.9, "grad_accum_steps": 2}], ids=["plain", "ema+accum"])
def test_a_stop_signal_saves_the_current_step_exits_130_and_resumes_bit_identical(tmp_path, capsys, signum, extra):
    ref = tmp_path / "ref"
    train(ToyTask(), _cfg(ref, **extra), ref)
    out = tmp_path / "stopped"
    accum = extra.get("grad_accum_steps", 1)
    cfg = _cfg(out, **extra)
    handlers_before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    # the signal arrives during step 6 (between the checkpoints of steps 4 and 8)
    status = run_reporting_errors(lambda c: train(_SignalledTask(signum, 5 * accum + 1), c, out), cfg, "latentdiff train-x")
    assert status == 130
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert "after step 6 of 12" in message and "rerun the same command to resume" in message
    assert [s for s, _ in checkpoint.list_checkpoints(out)] == [4, 6]  # step 6 finished and saved
    assert not checkpoint.is_stage_complete(out)
    # the handlers the process had before (SIG_IGN for SIGINT in a background job started by a shell) are back
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers_before
    result = train(ToyTask(), cfg, out)
    assert result.step == 12
    assert (out / "toy.safetensors").read_bytes() == (ref / "toy.safetensors").read_bytes()


def test_resuming_from_a_tampered_optimizer_file_is_one_sentence(tmp_path):
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(ToyTask(crash_at_step=9), _cfg(tmp_path), tmp_path)  # checkpoints of steps 4 and 8
    optimizer_file = checkpoint.latest_checkpoint(tmp_path) / checkpoint.OPTIMIZER_FILE
    # a valid torch file whose AdamW moments belong to a model of another size
    foreign = torch.load(optimizer_file, weights_only=True)
    for moments in foreign["optimizer"]["state"].values():
        moments["exp_avg"] = torch.zeros(3, 3)
    buffer = io.BytesIO()
    torch.save(foreign, buffer)
    for content in (b"\x00garbage" * 100, buffer.getvalue()):
        optimizer_file.write_bytes(content)
        with pytest.raises(UserError, match=r"step-000008 is damaged .*; delete that folder to resume from step 4"):
            train(ToyTask(), _cfg(tmp_path), tmp_path)


def test_time_budget_times_the_run_then_retimes_it_at_the_new_speed():
    budget = TimeBudget(max_minutes=10)  # 600 s
    agreed = lambda due: due  # noqa: E731 - one process: what it sees is agreed
    assert not budget.timing_due(TIMING_SKIP_STEPS - 1, step=4, now=1.0, agreed=agreed)
    assert not budget.timing_due(TIMING_SKIP_STEPS, step=5, now=2.0, agreed=agreed)  # the timing starts here
    assert budget.timing_due(TIMING_STEPS, step=25, now=12.0, agreed=agreed)
    # 20 steps in 10 s = 2 steps/s; 12 s of 600 used, so 588 s x 2 more steps fit
    assert budget.steps_that_fit(step=25, seconds_so_far=12.0, now=12.0) == (25 + 1176, 2.0)
    budget.steps_fixed = True
    assert not budget.timing_due(100, step=100, now=12.0 + RETIME_FRACTION * 600 - 1, agreed=agreed)
    assert budget.timing_due(101, step=145, now=12.0 + RETIME_FRACTION * 600, agreed=agreed)
    # the machine got busier: 120 steps in 60 s = 2 steps/s still; then 72 s used of 600 -> 528 s x 2
    assert budget.steps_that_fit(step=145, seconds_so_far=72.0, now=72.0) == (145 + 1056, 2.0)
    assert not TimeBudget(max_minutes=0).timing_due(TIMING_STEPS, step=25, now=1.0, agreed=agreed)
