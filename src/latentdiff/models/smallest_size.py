"""The smallest latent a loaded U-Net + VAE decoder can denoise and decode, read from their configs.

Every ResNet block (and every attention block's input) of diffusers' U-Net and VAE starts with a
GroupNorm. torch refuses a GroupNorm input with a single value per group (`F.group_norm` raises "Expected
more than 1 value per channel"): channels // groups * H * W * batch must be > 1. The U-Net halves the
latent at every level but the last (a stride-2 conv with padding 1: side -> ceil(side / 2)), so a small
image reaches a 1x1 level; where that level's narrowest GroupNorm has one channel per group, one image
(batch 1: guidance <= 1, or the last image of a batch) cannot be generated. Classifier-free guidance
doubles the batch, which hides the problem, so this is checked per image, whatever the guidance.
"""

from __future__ import annotations

import math

DEFAULT_NORM_GROUPS = 32  # diffusers' default for both models


def _fits(channels: int, groups: int, side: int) -> bool:
    """Whether a GroupNorm over (1, channels, side, side) sees more than one value per group."""
    return (channels // groups) * side * side > 1


def unet_accepts(unet_config, latent_side: int) -> bool:
    """Whether one (1, C, side, side) latent passes every GroupNorm of this UNet2DConditionModel."""
    groups = unet_config.norm_num_groups or DEFAULT_NORM_GROUPS
    widths = list(unet_config.block_out_channels)
    side = latent_side
    for level, width in enumerate(widths):
        # level `level` runs at `side`; its first ResNet normalises the previous level's width, the rest
        # (and the up path, whose inputs are the concatenation of two of these) at least its own width
        narrowest = min(width, widths[level - 1]) if level else width
        if not _fits(narrowest, groups, side):
            return False
        if level < len(widths) - 1:
            side = math.ceil(side / 2)
    return True  # the mid block runs at the last level's side and width, checked above


def vae_decoder_accepts(vae_config, latent_side: int) -> bool:
    """Whether the VAE decoder's first blocks (its widest width, at the latent's side) accept it;
    every later block runs at twice the side or more, which always fits."""
    groups = vae_config.norm_num_groups or DEFAULT_NORM_GROUPS
    return _fits(list(vae_config.block_out_channels)[-1], groups, latent_side)


def smallest_image_side(unet_config, vae_config, vae_scale_factor: int, size_multiple: int) -> int:
    """The smallest multiple of `size_multiple` pixels whose latent both models accept."""
    side = size_multiple
    while not (unet_accepts(unet_config, side // vae_scale_factor)
               and vae_decoder_accepts(vae_config, side // vae_scale_factor)):
        side += size_multiple
    return side
