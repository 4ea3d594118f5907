"""A randomly initialised `StableDiffusionPipeline` folder built from the size presets in config.py.

Tests and benchmarks of generation use it so that they do not depend on training: the weights are
random, but the folder has exactly the layout a trained one has (model_index.json, unet/, vae/,
text_encoder/, tokenizer/, scheduler/, safetensors, no safety checker) and loads with
`StableDiffusionPipeline.from_pretrained(dir)` and no other argument.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from latentdiff.presets import CLIP_PRESETS, UNET_PRESETS, VAE_PRESETS

# A few captions to train the tokenizer's BPE on; any text still tokenizes (byte fallback).
CAPTIONS = [
    "a red circle on a white background",
    "a blue square in the corner",
    "a green triangle and a yellow star",
    "two small purple hearts",
    "an orange cat sitting on a mat",
    "a smiling face with sunglasses",
]


def _groups(channels: tuple[int, ...]) -> int:
    """GroupNorm groups that divide every block's channel count (diffusers' default is 32)."""
    return math.gcd(32, *channels)


def build_random_pipeline(out_dir: str | Path, preset: str = "tiny", *, prediction_type: str = "epsilon",
                          seed: int = 0) -> Path:
    """Write a random pipeline of size `preset` ('tiny', 'small', 'base') to `out_dir` and return it."""
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from latentdiff.models.tokenizer import MIN_VOCAB_SIZE, train_clip_tokenizer

    clip, vae_preset, unet_preset = CLIP_PRESETS[preset], VAE_PRESETS[preset], UNET_PRESETS[preset]
    out_dir = Path(out_dir)
    torch.manual_seed(seed)

    tokenizer = train_clip_tokenizer(CAPTIONS, max(MIN_VOCAB_SIZE, min(clip.vocab_size, 1000)),
                                     clip.max_text_tokens)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=clip.text_width,
        intermediate_size=4 * clip.text_width,
        num_hidden_layers=clip.text_layers,
        num_attention_heads=clip.text_heads,
        max_position_embeddings=clip.max_text_tokens,
        projection_dim=clip.projection_dim,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    ))

    levels = len(vae_preset.block_out_channels)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=vae_preset.block_out_channels,
        layers_per_block=vae_preset.layers_per_block,
        latent_channels=vae_preset.latent_channels,
        norm_num_groups=getattr(vae_preset, "norm_num_groups", None) or _groups(vae_preset.block_out_channels),
        sample_size=vae_preset.image_size,
    )
    vae_scale_factor = 2 ** (levels - 1)

    down = tuple("CrossAttnDownBlock2D" if cross else "DownBlock2D" for cross in unet_preset.cross_attention_levels)
    up = tuple("CrossAttnUpBlock2D" if cross else "UpBlock2D" for cross in reversed(unet_preset.cross_attention_levels))
    unet = UNet2DConditionModel(
        sample_size=vae_preset.image_size // vae_scale_factor,
        in_channels=vae_preset.latent_channels,
        out_channels=vae_preset.latent_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=unet_preset.block_out_channels,
        layers_per_block=unet_preset.layers_per_block,
        # diffusers' `attention_head_dim` is (for historical reasons) the number of heads per block
        attention_head_dim=tuple(ch // unet_preset.attention_head_dim for ch in unet_preset.block_out_channels),
        cross_attention_dim=clip.text_width,
        norm_num_groups=_groups(unet_preset.block_out_channels),
    )
    # Stable Diffusion's training schedule (clip_sample off, steps_offset 1: what diffusers expects)
    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              steps_offset=1, num_train_timesteps=1000, prediction_type=prediction_type)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    return out_dir
