"""`latentdiff train-vae --data DIR --out DIR [--init DIR|HUB_ID] [--preset tiny|small|base]`.

From scratch: an AutoencoderKL built from the preset. With --init: a pretrained VAE folder, a pipeline
folder (its `vae/`), or a hub id, fine-tuned (safetensors weights only unless --allow-pickle).
Output: an AutoencoderKL folder that `AutoencoderKL.from_pretrained(OUT)` loads, whose `scaling_factor`
was measured on the training images; `validation_metrics.json` (PSNR) and `validation/` reconstruction
grids, TensorBoard logs and resumable training state.
"""

from __future__ import annotations

import dataclasses

from latentdiff.config import VAE_COLOUR_CELL_SIZE, VaeTrainConfig
from latentdiff.presets import VAE_PRESETS, lookup_preset
from latentdiff.data.prepared import open_prepared
from latentdiff.errors import UserError
from latentdiff.options import run_stage
from latentdiff.training.runner import run_training_stage

# diffusers and the training code: imported inside the functions that use them, so `--help` and a wrong option
# are answered before their ~9 s of imports (the CLI imports this module only to run it).

# batch_size / lr / epochs when the user gives none; in config.py, where --help reads them.


def build_task(cfg: VaeTrainConfig):
    """Open the dataset and build or load the VAE: every check a user can fail happens here, before
    any training."""
    from latentdiff.models.vae import check_image_size, downsampling_factor, load_vae, vae_from_preset
    from latentdiff.training.vae_task import VaeTask

    dataset = open_prepared(cfg.data)
    dataset.require_split("train")
    dataset.require_split("validation")
    if cfg.latent_channels < 0:
        raise UserError(f"--latent-channels must be 0 (the preset's) or positive (got {cfg.latent_channels}).")
    if cfg.init:
        if cfg.latent_channels:
            raise UserError("--latent-channels sets the size of a new VAE; a VAE given with --init keeps its own. "
                            "Drop one of the two.")
        vae = load_vae(cfg.init, allow_pickle=cfg.allow_pickle)
    else:
        preset = lookup_preset(VAE_PRESETS, cfg.preset, "VAE")
        if cfg.latent_channels:
            preset = dataclasses.replace(preset, latent_channels=cfg.latent_channels)
        vae = vae_from_preset(preset)
    check_image_size(vae, dataset.image_size, cfg.data)
    factor = downsampling_factor(vae)
    if cfg.crop_size and (cfg.crop_size < factor or cfg.crop_size % factor):
        raise UserError(f"--crop-size must be 0 (whole images) or a multiple of the VAE's downsampling factor {factor} "
                        f"(got {cfg.crop_size}); e.g. --crop-size {max(factor, dataset.image_size // 2 // factor * factor)}.")
    if cfg.colour_weight < 0:
        raise UserError(f"--colour-weight must be 0 (off) or positive (got {cfg.colour_weight}).")
    if cfg.colour_space != "rgb" and not cfg.colour_weight:
        raise UserError(f"--colour-space {cfg.colour_space} sets the space of the colour term, which is off; "
                        f"add --colour-weight (e.g. 1).")
    if cfg.colour_cell_size < 1 or dataset.image_size % cfg.colour_cell_size or (
            cfg.crop_size and cfg.crop_size % cfg.colour_cell_size):
        raise UserError(f"--colour-cell-size must be a whole number of pixels that divides the training images "
                        f"({cfg.crop_size or dataset.image_size} px; got {cfg.colour_cell_size}): e.g. 1 (every pixel) or 4.")
    if cfg.colour_cell_size != VAE_COLOUR_CELL_SIZE and not cfg.colour_weight:
        raise UserError(f"--colour-cell-size {cfg.colour_cell_size} sets the cells of the colour term, which is off; "
                        f"add --colour-weight (e.g. 1).")
    if cfg.decoder_only and not cfg.init:
        raise UserError("--decoder-only fine-tunes the decoder of a trained VAE: pass the VAE (or pipeline) folder "
                        "with --init.")
    if cfg.kl_weight < 0:
        raise UserError(f"--kl-weight must be 0 or more (got {cfg.kl_weight}); LDM uses 1e-6.")
    return VaeTask(vae, dataset, reconstruction_loss=cfg.reconstruction_loss, kl_weight=cfg.kl_weight,
                   scaling_images=cfg.scaling_images, validation_images=cfg.validation_images,
                   crop_size=cfg.crop_size, colour_weight=cfg.colour_weight, colour_space=cfg.colour_space,
                   colour_cell_size=cfg.colour_cell_size,
                   decoder_only=cfg.decoder_only)


def run(cfg: VaeTrainConfig):
    return run_training_stage(cfg, command="train-vae", artefact="VAE", presets=VAE_PRESETS,
                              build_task=build_task)


def main(argv: list[str] | None = None) -> int:
    return run_stage(run, VaeTrainConfig, argv, "latentdiff train-vae",
                     "Train a VAE (diffusers AutoencoderKL) on a prepared dataset, from a preset or --init; "
                     "its latent scaling factor is measured on the data.")
