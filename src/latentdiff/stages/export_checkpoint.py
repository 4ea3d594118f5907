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


def run_config(run_dir: Path, state: dict, allow_pickle: bool) -> UnetTrainConfig:
    """The train-unet options a checkpoint recorded, as the config that built the run (without its cache: the
    export needs no training data), after checking that the folders it names are still found from here."""
    if state.get("task") != "unet":
        raise UserError(f"{run_dir} is a {state.get('task', 'non-U-Net')} training run, not a train-unet one; "
                        f"export-checkpoint makes pipelines from U-Net runs (the other stages' folders are what "
                        f"they export at their end).")
    saved = state["config"]
    names = {f.name for f in dataclasses.fields(UnetTrainConfig)}
    if not set(saved) <= names:
        raise UserError(f"{run_dir}'s checkpoint records options this latentdiff does not have "
                        f"({', '.join(sorted(set(saved) - names))}); export it with the version that trained it.")
    cfg = dataclasses.replace(UnetTrainConfig(), **{**saved, "out": str(run_dir), "cache": False,
                                                    "allow_pickle": allow_pickle})
    for flag, folder in (("--data", cfg.data), ("--clip", cfg.clip), ("--vae", cfg.vae)):
        if folder and not Path(folder).expanduser().exists():
            raise UserError(f"The run was trained with {flag} {folder}, which is not found from here (a relative "
                            f"path counts from the folder the run was started in); run export-checkpoint from that "
                            f"folder, or put {folder} back.")
    return cfg


def load_checkpoint_weights(folder: Path, weights: str) -> tuple[dict, bool]:
    """(the trainable module's weights by name, whether they are the EMA) of a checkpoint: the EMA file holds the
    shadow of every trainable parameter; buffers, and everything when `weights` is raw, come from the model file."""
    tensors = checkpoint.load_tensors(folder / checkpoint.MODEL_FILE)
    averaged = folder / checkpoint.EMA_FILE
    use_ema = weights == "ema" and averaged.is_file()
    if use_ema:
        tensors.update(checkpoint.load_tensors(averaged))
    return tensors, use_ema


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
    try:  # read at once: a running train-unet deletes all but its last few checkpoints
        state = checkpoint.read_state(folder)
        tensors, use_ema = load_checkpoint_weights(folder, cfg.weights)
    except FileNotFoundError as err:
        if folder.exists():
            raise
        raise UserError(f"The checkpoint of step {step} was deleted while it was read (the run keeps only its last "
                        f"few, --keep-checkpoints); rerun to take the latest.") from err
    unet_cfg = run_config(run_dir, state, cfg.allow_pickle)

    from latentdiff.model_source import run_name, write_model_name
    from latentdiff.options import save_config
    from latentdiff.stages.train_unet import build_components, load_hint
    from latentdiff.training.diffusion_task import DiffusionTask

    task = DiffusionTask(unet_cfg, *build_components(unet_cfg))
    model = task.trainable_module()  # the U-Net (and the text encoder with --train-text-encoder), as the loop trains it
    model.load_state_dict(tensors, strict=True)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    task.export(model, out)
    save_config(unet_cfg, out)  # what trained it, as a finished run's folder has (--init and bundling read it)
    write_model_name(out, f"{run_name(run_dir)}-step-{step}")
    if cfg.weights == "ema" and not use_ema:
        print(f"{run_dir} keeps no EMA (--ema-decay 0), so these are the optimizer's weights.")
    print(f"Wrote the pipeline of {run_dir} at step {step} of {state['num_steps']} "
          f"({'EMA' if use_ema else 'raw'} weights) to {out}; {load_hint(out)}.")
    return out


def main(argv: list[str] | None = None) -> int:
    return run_stage(run, ExportCheckpointConfig, argv, "latentdiff export-checkpoint",
                     "Write a StableDiffusionPipeline folder from a train-unet run's saved checkpoint (the latest, or "
                     "--step N), while the run goes on or after it stopped.")
