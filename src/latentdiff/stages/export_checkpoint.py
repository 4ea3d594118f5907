"""`latentdiff export-checkpoint RUN --out DIR [--step N]`: a StableDiffusionPipeline folder from a train-unet run's
saved training state, so a run of hours can be looked at (generated from, evaluated) while it goes on, or used after
it was stopped, as diffusers' training scripts keep a loadable U-Net in each `checkpoint-N/`.

The run's own options come from the checkpoint (state.json records them to check a resume), so the U-Net is built
exactly as the run built it and the pipeline is assembled by the run's own export (`DiffusionTask.export`): the same
VAE, text encoder, tokenizer and scheduler config. The U-Net gets the checkpoint's EMA weights (what the run exports
at its end) unless `--weights raw`. Nothing in RUN is changed, and the latent cache is not touched.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from latentdiff import checkpoint
from latentdiff.config import ExportCheckpointConfig, UnetTrainConfig
from latentdiff.errors import UserError
from latentdiff.options import run_stage


def pick_checkpoint(run_dir: Path, step: int) -> tuple[int, Path]:
    """(step, folder) of the run's checkpoint at `step` (0: the latest); one sentence when there is none."""
    checkpoints = checkpoint.list_checkpoints(run_dir)
    if not checkpoints:
        raise UserError(f"{run_dir} holds no training checkpoint ({checkpoint.STATE_DIRNAME}/step-N); pass the --out "
                        f"folder of a train-unet run that has saved one (every --checkpoint-every steps).")
    if not step:
        return checkpoints[-1]
    for found, folder in checkpoints:
        if found == step:
            return found, folder
    raise UserError(f"{run_dir} has no checkpoint of step {step}; it keeps steps "
                    f"{', '.join(str(found) for found, _ in checkpoints)} (--keep-checkpoints says how many).")


def run_config(run_dir: Path, saved: dict) -> UnetTrainConfig:
    """The train-unet options a checkpoint recorded, as the config that built the run (without its cache: the
    export needs no training data)."""
    names = {f.name for f in dataclasses.fields(UnetTrainConfig)}
    if not set(saved) <= names or "prediction_type" not in saved:
        raise UserError(f"{run_dir} is not a train-unet run (its checkpoint records other options); export-checkpoint "
                        f"makes pipelines from U-Net runs, whose CLIP and VAE are the finished folders they trained on.")
    return dataclasses.replace(UnetTrainConfig(), **{**saved, "out": str(run_dir), "cache": False})


def run(cfg: ExportCheckpointConfig) -> Path:
    if not cfg.out:
        raise UserError("Pass --out DIR, the folder for the pipeline (e.g. --out runs/unet-step-20000).")
    run_dir, out = Path(cfg.run).expanduser(), Path(cfg.out).expanduser()
    step, folder = pick_checkpoint(run_dir, cfg.step)
    if out.resolve() == run_dir.resolve():
        raise UserError(f"--out is the run folder itself, where the run writes its own pipeline when it ends; pass "
                        f"another folder, such as {run_dir}-step-{step}.")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"--out {out} is not empty; pass a new or empty folder for the pipeline.")
    try:
        return export(run_dir, step, folder, out, cfg.weights)
    except FileNotFoundError as err:  # a running train-unet rotated the checkpoint away while it was read
        if folder.exists():
            raise
        raise UserError(f"The checkpoint of step {step} was deleted while it was read (the run keeps only its last "
                        f"few, --keep-checkpoints); rerun to take the latest.") from err


def export(run_dir: Path, step: int, folder: Path, out: Path, weights: str) -> Path:
    """The pipeline of checkpoint `folder` (of `step`) of `run_dir`, written to `out`."""
    state = json.loads((folder / checkpoint.STATE_FILE).read_text())
    unet_cfg = run_config(run_dir, state["config"])

    import torch

    from latentdiff.stages.train_unet import build_components, load_hint
    from latentdiff.training.diffusion_task import DiffusionTask

    task = DiffusionTask(unet_cfg, *build_components(unet_cfg))
    model = task.trainable_module()  # the U-Net (and the text encoder with --train-text-encoder), as the loop trains it
    checkpoint.load_module_weights(model, folder / checkpoint.MODEL_FILE)
    averaged = folder / checkpoint.EMA_FILE
    use_ema = weights == "ema" and averaged.is_file()
    if use_ema:  # the EMA file holds the shadow of every trainable parameter, keyed by its name
        shadow = checkpoint.load_tensors(averaged)
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                parameter.copy_(shadow[name])
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    task.export(model, out)
    which = "EMA" if use_ema else "raw"
    print(f"Wrote the pipeline of {run_dir} at step {step} of {state['num_steps']} ({which} weights) to {out}; "
          f"{load_hint(out)}.")
    return out


def main(argv: list[str] | None = None) -> int:
    return run_stage(run, ExportCheckpointConfig, argv, "latentdiff export-checkpoint",
                     "Write a StableDiffusionPipeline folder from a train-unet run's saved checkpoint (the latest, or "
                     "--step N), while the run goes on or after it stopped.")
