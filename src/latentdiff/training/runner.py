"""What every training stage's `run(cfg)` does around the loop, written once: the checks before any
work, skipping a stage that already finished, the stage's defaults, seeding, and recording the resolved
config once per run. A stage supplies only how to build its task."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Mapping

from latentdiff.checkpoint import is_stage_complete
from latentdiff.config import TrainConfig
from latentdiff.data.prepared import open_prepared
from latentdiff.errors import UserError
from latentdiff.options import save_config
from latentdiff.presets import lookup_preset


def require_data_and_out(cfg: TrainConfig, artefact: str) -> Path:
    """`artefact` says what --out will hold ("the CLIP model"). Returns the --out folder."""
    if not cfg.data:
        raise UserError("Say which prepared dataset to train on with --data DIR (made by `latentdiff prepare-data`).")
    if not cfg.out:
        raise UserError(f"Say where to write {artefact} with --out DIR.")
    return Path(cfg.out)


def already_finished(out: Path, command: str, artefact: str) -> bool:
    """True (and says so) when `out` holds a finished stage: rerunning a finished command does nothing."""
    if not is_stage_complete(out):
        return False
    print(f"latentdiff {command}: {out} already holds a finished {artefact}; nothing to do "
          f"(use a new --out to train again).")
    return True


def train_and_record(task, cfg: TrainConfig, out: Path):
    """Run the loop, then write the resolved config from one process only. Written after training: a
    rerun refused for changed options must not overwrite the record of what trained the weights."""
    # torch loads here, after the checks: a wrong option is answered before its ~9 s of imports
    from latentdiff.runtime import process_state
    from latentdiff.training.loop import train

    result = train(task, cfg, out)
    if process_state().is_main_process:
        # Without --stop-at-step: rerun with this file, a stopped run goes on to the end of its schedule.
        save_config(dataclasses.replace(cfg, stop_at_step=0), out)
    return result


def with_recipe(cfg: TrainConfig, presets: Mapping[str, Any]) -> TrainConfig:
    """`cfg` with every recipe option the user left unset (None) taken from its --preset row: the
    scratch recipe, or the fine-tuning one with --init."""
    row = lookup_preset(presets, cfg.preset, "model")
    return cfg.with_defaults(**dataclasses.asdict(row.finetune if cfg.init else row.scratch))


def run_training_stage(cfg: TrainConfig, *, command: str, artefact: str, presets: Mapping[str, Any],
                       build_task: Callable[[TrainConfig], Any], check: Callable[[TrainConfig], None] | None = None):
    """The body of `train-clip`, `train-vae` and `train-unet`: returns the loop's TrainResult, or None when
    --out already holds a finished `artefact`. The --preset row of `presets` (presets.py) gives the recipe
    (scratch, or finetune with --init); it fills only what the user left unset (None).
    `check(cfg)`: the stage's checks that need no torch, run with the dataset's before torch loads (~2-10 s)."""
    out = require_data_and_out(cfg, f"the {artefact}")
    if already_finished(out, command, artefact):
        return None
    open_prepared(cfg.data).require_split("train")  # a wrong --data is told in a fraction of a second
    if check is not None:
        check(cfg)
    cfg = with_recipe(cfg, presets)
    from latentdiff.runtime import seed_everything  # torch: imported once the options are known to be good

    seed_everything(cfg.seed)  # a preset model's initial weights depend only on --seed
    return train_and_record(build_task(cfg), cfg, out)
