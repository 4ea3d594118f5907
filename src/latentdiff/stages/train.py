"""`latentdiff train --data DIR --out RUN [--preset tiny|small|base]`: the training stages in order.

    RUN/clip          train-clip  (a CLIPModel folder)
    RUN/clip-aligned  align-text of RUN/clip, when the training captions are in several languages (--no-align-text:
                      not run): its text encoder gives one image's captions in every language nearly the same states
    RUN/vae           train-vae   (an AutoencoderKL folder)
    RUN/pipeline      train-unet  (a StableDiffusionPipeline folder, conditioned on RUN/clip-aligned or RUN/clip,
                                   in RUN/vae's latents)

A stage whose folder carries the completion marker (`latentdiff.checkpoint.is_stage_complete`) is skipped;
the interrupted one resumes from its last checkpoint, because every stage resumes when rerun with the same
--out and the same options, and this command always derives the same options from its own.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from latentdiff.checkpoint import is_stage_complete
from latentdiff.config import AlignTextConfig, ClipTrainConfig, TrainAllConfig, UnetTrainConfig, VaeTrainConfig
from latentdiff.data.prepared import caption_languages, open_prepared
from latentdiff.errors import UserError
from latentdiff.folder_kinds import RUN_ALIGNED_CLIP_DIRNAME, RUN_CLIP_DIRNAME, RUN_PIPELINE_DIRNAME, RUN_VAE_DIRNAME
from latentdiff.options import run_stage, save_config
from latentdiff.presets import VAE_PRESETS, lookup_preset
from latentdiff.stages import align_text, train_clip, train_unet, train_vae

# Options of `train` handed to every stage as they are, when set (None means: the stage's default).
SHARED_OPTIONS = ("data", "preset", "seed", "epochs", "batch_size", "checkpoint_every", "validate_every",
                  "mixed_precision", "num_workers", "grad_accum_steps", "gradient_checkpointing", "compile")


@dataclasses.dataclass
class StagePlan:
    name: str  # the command, for messages
    out: Path
    config: Any
    run: Callable[[Any], Any]


def stage_config(cls: type, cfg: TrainAllConfig, out: Path, max_steps: int, **extra: Any):
    """`cls` filled with the shared options that are set, the stage's own max steps and `extra`."""
    names = {f.name for f in dataclasses.fields(cls) if not f.metadata.get("hidden")}  # not the flags it refuses
    shared = {name: getattr(cfg, name) for name in SHARED_OPTIONS if name in names and getattr(cfg, name) is not None}
    return cls(**shared, out=str(out), max_steps=max_steps or cfg.max_steps, **extra)


def several_languages(data: str) -> bool:
    """Are the training captions of the prepared dataset at `data` in more than one language?"""
    return len(caption_languages(open_prepared(data).require_split("train"))) > 1


def plan(cfg: TrainAllConfig) -> list[StagePlan]:
    run_dir = Path(cfg.out)
    clip_dir, vae_dir, pipeline_dir = run_dir / RUN_CLIP_DIRNAME, run_dir / RUN_VAE_DIRNAME, run_dir / RUN_PIPELINE_DIRNAME
    stages = [StagePlan("train-clip", clip_dir, stage_config(ClipTrainConfig, cfg, clip_dir, cfg.clip_max_steps),
                        train_clip.run)]
    text_clip_dir = clip_dir  # the CLIP whose text encoder conditions the U-Net
    # A U-Net already started on RUN/clip (a run begun with --no-align-text, or before `train` aligned) resumes on it.
    unet_started_on_clip = pipeline_dir.is_dir() and any(pipeline_dir.iterdir()) and not (
        run_dir / RUN_ALIGNED_CLIP_DIRNAME).exists()
    if cfg.align_text and not unet_started_on_clip and several_languages(cfg.data):
        text_clip_dir = run_dir / RUN_ALIGNED_CLIP_DIRNAME
        stages.append(StagePlan("align-text", text_clip_dir,
                                stage_config(AlignTextConfig, cfg, text_clip_dir, cfg.align_max_steps, clip=str(clip_dir)),
                                align_text.run))
    stages.append(StagePlan("train-vae", vae_dir, stage_config(VaeTrainConfig, cfg, vae_dir, cfg.vae_max_steps),
                            train_vae.run))
    stages.append(StagePlan("train-unet", pipeline_dir,
                            stage_config(UnetTrainConfig, cfg, pipeline_dir, cfg.unet_max_steps, clip=str(text_clip_dir),
                                         vae=str(vae_dir)),
                            train_unet.run))
    return stages


def check_inputs(cfg: TrainAllConfig) -> None:
    """What can be checked before the first stage trains, so a bad dataset does not cost a CLIP run first."""
    if not cfg.data:
        raise UserError("Say which prepared dataset to train on with --data DIR (made by `latentdiff prepare-data`).")
    if not cfg.out:
        raise UserError("Say where to write the run with --out DIR (clip/, vae/ and pipeline/ go inside).")
    dataset = open_prepared(cfg.data)
    dataset.require_split("train")
    dataset.require_split("validation")
    for name in ("max_steps", "clip_max_steps", "align_max_steps", "vae_max_steps", "unet_max_steps"):
        if getattr(cfg, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} must be 0 (use the epochs) or positive.")
    from latentdiff.models.vae import check_image_size  # diffusers: once the cheap checks have passed

    vae_dir = Path(cfg.out) / RUN_VAE_DIRNAME
    if not is_stage_complete(vae_dir):  # a finished VAE was checked (and is checked again by train-unet)
        check_image_size(lookup_preset(VAE_PRESETS, cfg.preset, "VAE"), dataset.image_size, cfg.data)


def run(cfg: TrainAllConfig) -> Path:
    check_inputs(cfg)
    run_dir = Path(cfg.out)
    save_config(cfg, run_dir)
    stages = plan(cfg)
    for index, stage in enumerate(stages, start=1):
        if is_stage_complete(stage.out):
            print(f"latentdiff train: [{index}/{len(stages)}] {stage.name}: {stage.out} is complete, skipping.", flush=True)
            continue
        print(f"latentdiff train: [{index}/{len(stages)}] {stage.name} -> {stage.out}", flush=True)
        stage.run(stage.config)
    pipeline_dir = stages[-1].out
    print(f"latentdiff train: done; the pipeline is {pipeline_dir} (`latentdiff generate --model {pipeline_dir} PROMPT`).")
    return pipeline_dir


def main(argv: list[str] | None = None) -> int:
    return run_stage(run, TrainAllConfig, argv, "latentdiff train",
                     "Train CLIP (and align its text encoder across caption languages when there are several), "
                     "then the VAE, then the U-Net on a prepared dataset into one run folder (RUN/clip, "
                     "RUN/clip-aligned, RUN/vae, RUN/pipeline); rerun the same command to resume.")
