"""The denoiser: a diffusers `UNet2DConditionModel` built from a size preset, or loaded from a pretrained
U-Net folder, a pipeline folder's `unet/`, or a hub id (`--init`). Weights are read from safetensors only,
unless the user explicitly allows pickles.

The architecture is Stable Diffusion's (Rombach et al. 2022): ResNet blocks at every resolution, with
cross-attention to the text encoder's last hidden state at the levels the preset marks. Its three
interface sizes come from the frozen parts it is trained with, never from the preset:
`in/out_channels` = the VAE's latent channels, `sample_size` = image_size / the VAE's downsampling
factor, `cross_attention_dim` = the CLIP text encoder's hidden size.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.transformers.transformer_2d import Transformer2DModel

from latentdiff.presets import UnetPreset
from latentdiff.errors import UserError
from latentdiff.models.weights import load_diffusers_component



def unet_from_preset(preset: UnetPreset, *, latent_channels: int, sample_size: int,
                     cross_attention_dim: int, text_time_embedding: bool = False,
                     transformer_layers_per_block: tuple[int, ...] = ()) -> UNet2DConditionModel:
    """A randomly initialised U-Net with the preset's widths, sized to the VAE and text encoder.

    `text_time_embedding`: diffusers' `addition_embed_type="text"` (a `TextTimeEmbedding`: attention-pool
    the text hidden states (B, L, D) -> (B, D), project to the time embedding and add it), so the prompt
    reaches every ResNet block through its scale/shift, not only the levels with cross-attention. The
    pipeline calls the U-Net exactly as before (it pools `encoder_hidden_states` itself)."""
    for width in preset.block_out_channels:
        if width % preset.attention_head_dim:
            raise ValueError(f"U-Net width {width} is not a multiple of the head size {preset.attention_head_dim}")
    levels = preset.cross_attention_levels
    down = tuple("CrossAttnDownBlock2D" if attn else "DownBlock2D" for attn in levels)
    up = tuple("CrossAttnUpBlock2D" if attn else "UpBlock2D" for attn in reversed(levels))
    # diffusers' `attention_head_dim` is, for historical reasons, the number of heads per level (its
    # docs say so; SD 2 passes [5, 10, 20, 20] for 64-wide heads). We keep the preset in the clearer
    # unit, channels per head, and convert here.
    heads_per_level = tuple(width // preset.attention_head_dim for width in preset.block_out_channels)
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=latent_channels,
        out_channels=latent_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=tuple(preset.block_out_channels),
        layers_per_block=preset.layers_per_block,
        attention_head_dim=heads_per_level,
        # one count per level (the middle block takes the last); diffusers' default, 1, when not given
        transformer_layers_per_block=(transformer_depth(transformer_layers_per_block,
                                                        attention_levels=attention_levels(levels))
                                      if transformer_layers_per_block else 1),
        cross_attention_dim=cross_attention_dim,
        norm_num_groups=preset.norm_num_groups,
        # heads of 64 channels, as in CLIP's own attention (diffusers' default of 64 heads assumes a wide text encoder)
        **({"addition_embed_type": "text", "addition_embed_type_num_heads": max(1, cross_attention_dim // 64)}
           if text_time_embedding else {}),
    )


def attention_levels(cross_attention_levels) -> list[bool]:
    """Which levels of a new U-Net hold attention layers: the preset's cross-attention levels, and the last
    level always, whose count the middle block (diffusers' default `UNetMidBlock2DCrossAttn`) takes."""
    return [bool(attn) for attn in cross_attention_levels[:-1]] + [True]


def transformer_depth(counts, *, attention_levels: list[bool], current: list[int] | None = None,
                      example: list[int] | None = None) -> int | list[int]:
    """diffusers' `transformer_layers_per_block` for one count per level (finest resolution first): one int
    when every level has the same, else the list. `attention_levels` says which levels hold attention layers
    (for the last level: its blocks or the middle block, which takes the last count); a level without them
    keeps its `current` count (1 for a new U-Net), since diffusers would record any other and build nothing."""
    counts, levels = list(counts), len(attention_levels)
    current = current or [1] * levels
    example = example or [1] * (levels - 1) + [2]
    if len(counts) != levels or min(counts, default=0) < 1:
        raise UserError(f"--transformer-layers-per-block needs {levels} counts of 1 or more, one per level of the U-Net "
                        f"from the finest resolution down, such as {','.join(map(str, example))}; "
                        f"got {','.join(map(str, counts))}.")
    idle = [level for level in range(levels) if not attention_levels[level] and counts[level] != current[level]]
    if idle:
        level = idle[0]
        raise UserError(f"Level {level + 1} of the U-Net (finest first) has no attention layers that take transformer "
                        f"blocks, so --transformer-layers-per-block must keep its count at {current[level]}, such as "
                        f"{','.join(map(str, example))}; got {','.join(map(str, counts))}.")
    return counts[0] if len(set(counts)) == 1 else counts


def deepen_attention(unet: UNet2DConditionModel, transformer_layers_per_block: list[int], *,
                     seed: int = 0) -> UNet2DConditionModel:
    """A copy of `unet` with more transformer blocks in its attention layers (`Transformer2DModel`), one
    count per level from the finest resolution down (the up blocks mirror it, the middle block takes the
    last), that computes the same function as `unet`.

    Each `BasicTransformerBlock` adds its self-attention, cross-attention and feed-forward outputs to its
    input (residual connections), so an added block whose three output projections are zero is the
    identity. Its other weights keep diffusers' random init (drawn from `seed`), so the projections get
    gradients from the first step and the block starts learning at once, as ControlNet's zero convolutions
    do. This grows a trained model's capacity where the text meets the layout (the 8x8 and 4x4 latent
    levels of `small`) without starting it over; the result loads as any `UNet2DConditionModel`."""
    levels = len(unet.config.block_out_channels)
    current = unet.config.transformer_layers_per_block
    current = [current] * levels if isinstance(current, int) else list(current)
    if unet.config.get("reverse_transformer_layers_per_block") is not None or \
            any(isinstance(count, (list, tuple)) for count in current):
        raise UserError("The --init U-Net sets the transformer blocks of each attention layer one by one "
                        "(reverse_transformer_layers_per_block or nested lists in its config), which "
                        "--transformer-layers-per-block cannot deepen; leave the option out to train it as it is.")
    # the up blocks take the counts in reverse, so a level holds transformers if its down or its up block does
    levels_with_attention = [_holds_transformers(down) or _holds_transformers(up)
                             for down, up in zip(unet.down_blocks, reversed(unet.up_blocks))]
    levels_with_attention[-1] = levels_with_attention[-1] or _holds_transformers(unet.mid_block)
    if not any(levels_with_attention):
        raise UserError("The --init U-Net has no transformer blocks (diffusers' Transformer2DModel) to add to, so "
                        "--transformer-layers-per-block cannot deepen it; leave the option out to train it as it is.")
    coarsest = max(level for level, attn in enumerate(levels_with_attention) if attn)
    example = [count + (level == coarsest) for level, count in enumerate(current)]
    target = list(transformer_layers_per_block)
    depth = transformer_depth(target, attention_levels=levels_with_attention, current=current, example=example)
    if any(new < old for new, old in zip(target, current)):
        raise UserError(f"The --init U-Net has {','.join(map(str, current))} transformer blocks per level and "
                        f"--transformer-layers-per-block {','.join(map(str, target))} would drop trained ones; give each "
                        f"level at least as many, or leave the option out to keep the U-Net's own.")
    if target == current:
        return unet
    with torch.random.fork_rng(devices=[]):  # the added blocks' init depends on --seed, not on what ran before
        torch.manual_seed(seed)
        deeper = UNet2DConditionModel.from_config(unet.config, transformer_layers_per_block=depth)
    missing, unexpected = deeper.load_state_dict(unet.state_dict(), strict=False)
    trained = {name: len(module.transformer_blocks) for name, module in unet.named_modules()
               if isinstance(module, Transformer2DModel)}
    added = [f"{name}.transformer_blocks.{index}" for name, module in deeper.named_modules()
             if isinstance(module, Transformer2DModel) for index in range(trained[name], len(module.transformer_blocks))]
    if unexpected or any(not key.startswith(tuple(f"{name}." for name in added)) for key in missing):
        raise RuntimeError(f"deepening did not keep every trained weight: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for name in added:
        block = deeper.get_submodule(name)
        for projection in (block.attn1.to_out[0], block.attn2.to_out[0], block.ff.net[-1]):
            torch.nn.init.zeros_(projection.weight)
            torch.nn.init.zeros_(projection.bias)
    # only when needed: diffusers warns on any dtype cast of a built model
    return deeper if (deeper.dtype, deeper.device) == (unet.dtype, unet.device) else deeper.to(unet.device, unet.dtype)


def _holds_transformers(block) -> bool:
    """Whether `block`'s attention layers are `Transformer2DModel`s, whose depth follows the config's counts
    (a `DualTransformer2DModel` holds two of one block each, whatever the count)."""
    return any(isinstance(layer, Transformer2DModel) for layer in getattr(block, "attentions", None) or ())


def count_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


def load_unet(init: str, *, allow_pickle: bool = False) -> UNet2DConditionModel:
    """A pretrained U-Net from a local folder (U-Net or pipeline folder) or a hub id (a U-Net repository
    or a pipeline repository with `unet/`); pickled weights only with `allow_pickle` (`--allow-pickle`)."""
    return load_diffusers_component(UNet2DConditionModel, init, subfolder="unet", allow_pickle=allow_pickle)


def check_unet_fits(unet: UNet2DConditionModel, *, text_width: int, latent_channels: int, clip_dir: str,
                    vae_dir: str, init: str) -> None:
    """An --init U-Net must read the VAE's latents and attend to the text encoder's hidden states;
    say which one does not fit, and what to pass instead, before any work starts."""
    cross_dim = unet.config.cross_attention_dim
    if isinstance(cross_dim, (list, tuple)):  # per-block dims: every one must match
        cross_dim = cross_dim[0] if len(set(cross_dim)) == 1 else tuple(cross_dim)
    if cross_dim != text_width:
        raise UserError(f"The CLIP text encoder in {clip_dir} is {text_width} wide but the U-Net from {init} attends to "
                        f"{cross_dim}-wide text (cross_attention_dim); pass --clip a CLIP folder whose text width is "
                        f"{cross_dim}, or drop --init to train a U-Net sized for this CLIP.")
    if unet.config.in_channels != latent_channels or unet.config.out_channels != latent_channels:
        raise UserError(f"The VAE in {vae_dir} has {latent_channels} latent channels but the U-Net from {init} reads "
                        f"{unet.config.in_channels} and writes {unet.config.out_channels}; pass --vae a VAE with "
                        f"{unet.config.in_channels} latent channels, or drop --init to train a U-Net sized for this VAE.")
