"""Sizing generation batches to the memory at hand (used by `latentdiff.pipeline`)."""

from __future__ import annotations

import math
import os

import torch


def estimate_bytes_per_image(unet_config, latent_height: int, latent_width: int, guided: bool) -> int:
    """Peak U-Net inference memory for one image: the skip connections every level keeps for the
    decoder, plus the largest working set (a few feature maps, or one level's attention scores)."""
    channels = list(unet_config.block_out_channels)
    heads = unet_config.attention_head_dim  # diffusers' name; it holds the number of heads per block
    heads = list(heads) if isinstance(heads, (list, tuple)) else [heads] * len(channels)
    skips, peak = 0, 0
    for level, (width, num_heads, block) in enumerate(zip(channels, heads, unet_config.down_block_types)):
        pixels = math.ceil(latent_height / 2**level) * math.ceil(latent_width / 2**level)
        skips += (unet_config.layers_per_block + 1) * width * pixels
        peak = max(peak, 8 * width * pixels)  # resnet in/out, norm, conv workspace
        if "CrossAttn" in block:
            peak = max(peak, 3 * num_heads * pixels * pixels)  # (heads, HW, HW) scores + softmax + copy
    floats = (skips + peak) * (2 if guided else 1)  # classifier-free guidance doubles the U-Net batch
    return 4 * floats


def free_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # not Linux: assume a modest machine
        return 4 * 2**30


def empty_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
