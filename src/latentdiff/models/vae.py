"""The VAE: a diffusers `AutoencoderKL` built from a size preset, or loaded from a pretrained folder or
hub id (`--init`). Weights are read from safetensors only, unless the user explicitly allows pickles.

The architecture is Stable Diffusion's (Rombach et al. 2022, "High-Resolution Image Synthesis with
Latent Diffusion Models", the f=2**(levels-1), c=4 KL autoencoder); the preset only picks widths and
depth, so any diffusers tool that reads an `AutoencoderKL` folder reads ours.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL

from latentdiff.presets import VaePreset
from latentdiff.errors import UserError
from latentdiff.models.weights import load_diffusers_component


def vae_from_preset(preset: VaePreset) -> AutoencoderKL:
    """A randomly initialised `AutoencoderKL` with the preset's sizes. The scaling factor stays at the
    diffusers default until export, where it is measured on the training data."""
    levels = len(preset.block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(preset.block_out_channels),
        layers_per_block=preset.layers_per_block,
        latent_channels=preset.latent_channels,
        norm_num_groups=preset.norm_num_groups,
        sample_size=preset.image_size,
    )


def downsampling_factor(vae: AutoencoderKL | VaePreset) -> int:
    """Pixels per latent cell along one side: every level but the last halves the resolution."""
    levels = vae.block_out_channels if isinstance(vae, VaePreset) else vae.config.block_out_channels
    return 2 ** (len(levels) - 1)


def check_image_size(vae: AutoencoderKL | VaePreset, image_size: int, data_dir: str | Path) -> None:
    """The encoder halves the image `levels - 1` times; a size it cannot halve cleanly would decode to a
    different size than it was given, so refuse it before training starts. `vae` may be a preset, so
    `latentdiff train` can check before it trains anything."""
    factor = downsampling_factor(vae)
    if image_size % factor != 0:
        raise UserError(f"The images in {data_dir} are {image_size}x{image_size} pixels, which the VAE "
                        f"(downsampling factor {factor}) cannot encode; prepare the dataset again with "
                        f"`--image-size` a multiple of {factor} (e.g. {max(factor, image_size // factor * factor)}).")


def load_vae(init: str, *, allow_pickle: bool = False) -> AutoencoderKL:
    """A pretrained VAE from a local folder (a VAE folder or a pipeline folder) or a hub id (a VAE
    repository or a pipeline repository with `vae/`); pickled weights only with `allow_pickle`."""
    return load_diffusers_component(AutoencoderKL, init, subfolder="vae", allow_pickle=allow_pickle)


class VaeForTraining(torch.nn.Module):
    """The trainable module the loop sees: forward = encode, sample, decode, returning the posterior too
    (the KL term needs it; `AutoencoderKL.forward` drops it). Training goes through `forward` so that a
    DistributedDataParallel wrapper (multi-process training) sees the call and synchronises gradients."""

    def __init__(self, vae: AutoencoderKL):
        super().__init__()
        self.vae = vae

    def forward(self, pixels: torch.Tensor, generator: torch.Generator | None = None):
        posterior = self.vae.encode(pixels).latent_dist  # mean/logvar: (B, C_latent, H/f, W/f)
        # Sampled with the loop's generator (the reparameterisation trick), so a resumed run draws the
        # same noise.
        latents = posterior.sample(generator=generator)  # (B, C_latent, H/f, W/f)
        decoded = self.vae.decode(latents).sample  # (B, 3, H, W)
        return decoded, posterior
