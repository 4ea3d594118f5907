"""What every training stage's `run(cfg)` does around the loop, written once: the checks before any
work, skipping a stage that already finished, and recording the resolved config once per run."""

from __future__ import annotations

from pathlib import Path

from latentdiff.checkpoint import is_stage_complete
from latentdiff.config import TrainConfig
from latentdiff.options import save_config
from latentdiff.errors import UserError
from latentdiff.runtime import process_state


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
    from latentdiff.training.loop import train

    result = train(task, cfg, out)
    if process_state().is_main_process:
        save_config(cfg, out)
    return result
