"""The VAE: a diffusers `AutoencoderKL` built from a size preset, or loaded from a pretrained folder or
hub id (`--init`). Weights are read from safetensors only, unless the user explicitly allows pickles.

The architecture is Stable Diffusion's (Rombach et al. 2022, "High-Resolution Image Synthesis with
Latent Diffusion Models", the f=2**(levels-1), c=4 KL autoencoder); the preset only picks widths and
depth, so any diffusers tool that reads an `AutoencoderKL` folder reads ours.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL

from latentdiff.config import VaePreset
from latentdiff.errors import UserError

# Stable Diffusion's VAE (and every diffusers `AutoencoderKL` config) stores this class name.
VAE_CLASS_NAME = "AutoencoderKL"
# Where a diffusers pipeline folder keeps its VAE.
PIPELINE_VAE_SUBFOLDER = "vae"
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth")


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


def downsampling_factor(vae: AutoencoderKL) -> int:
    """Pixels per latent cell along one side: every level but the last halves the resolution."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def preset_downsampling_factor(preset: VaePreset) -> int:
    return 2 ** (len(preset.block_out_channels) - 1)


def check_image_size(vae: AutoencoderKL | VaePreset, image_size: int, data_dir: str | Path) -> None:
    """The encoder halves the image `levels - 1` times; a size it cannot halve cleanly would decode to a
    different size than it was given, so refuse it before training starts. `vae` may be a preset, so
    `latentdiff train` can check before it trains anything."""
    factor = preset_downsampling_factor(vae) if isinstance(vae, VaePreset) else downsampling_factor(vae)
    if image_size % factor != 0:
        raise UserError(f"The images in {data_dir} are {image_size}x{image_size} pixels, which the VAE "
                        f"(downsampling factor {factor}) cannot encode; prepare the dataset again with "
                        f"`--image-size` a multiple of {factor} (e.g. {max(factor, image_size // factor * factor)}).")


def _pickle_only(folder: Path) -> bool:
    names = [p.name for p in folder.iterdir() if p.is_file()]
    has_safetensors = any(n.endswith(".safetensors") for n in names)
    return not has_safetensors and any(n.endswith(PICKLE_SUFFIXES) for n in names)


def _local_vae_folder(root: Path) -> Path:
    """`root` itself when it is a VAE folder, `root/vae` when it is a pipeline folder."""
    for folder in (root, root / PIPELINE_VAE_SUBFOLDER):
        config_path = folder / "config.json"
        if config_path.is_file():
            try:
                class_name = json.loads(config_path.read_text(encoding="utf-8")).get("_class_name")
            except json.JSONDecodeError:
                class_name = None
            if class_name == VAE_CLASS_NAME:
                return folder
    raise UserError(f"{root} is neither an AutoencoderKL folder nor a pipeline folder with a '{PIPELINE_VAE_SUBFOLDER}/' "
                    f"subfolder; pass --init a folder saved by `latentdiff train-vae` or by diffusers' save_pretrained.")


def load_vae(init: str, *, allow_pickle: bool = False) -> AutoencoderKL:
    """Load a pretrained VAE from a local folder (a VAE folder or a pipeline folder) or a hub id.

    diffusers falls back to pickled `.bin` weights when no safetensors file exists; unpickling can run
    arbitrary code, so that fallback is only allowed when the user said so (`--allow-pickle`)."""
    # use_safetensors=True refuses pickles; None lets diffusers prefer safetensors and fall back.
    use_safetensors = None if allow_pickle else True
    local = Path(init).expanduser()
    if local.exists():
        folder = _local_vae_folder(local)
        if not allow_pickle and _pickle_only(folder):
            raise UserError(f"{folder} holds only pickled weights, which can run code when loaded; convert them to "
                            f"safetensors, or pass --allow-pickle if you trust where they came from.")
        try:
            return AutoencoderKL.from_pretrained(folder, use_safetensors=use_safetensors)
        except (OSError, ValueError) as err:  # missing or mismatched weight files
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"Could not load the VAE in {folder} ({first}); pass --init a complete AutoencoderKL "
                            f"folder (config.json + diffusion_pytorch_model.safetensors).") from None
    # A hub id: a VAE repository (config.json at the top) or a pipeline repository (vae/ subfolder).
    errors = []
    for subfolder in (None, PIPELINE_VAE_SUBFOLDER):
        try:
            return AutoencoderKL.from_pretrained(init, subfolder=subfolder, use_safetensors=use_safetensors)
        except (OSError, ValueError) as err:  # diffusers raises EnvironmentError (OSError) for missing files
            errors.append(str(err).splitlines()[0] if str(err) else type(err).__name__)
    raise UserError(f"Could not load a VAE from '{init}' ({errors[-1]}); pass --init an existing folder or a hub id "
                    f"of an AutoencoderKL or pipeline repository (add --allow-pickle only for trusted .bin weights).")


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
