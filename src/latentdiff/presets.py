"""Model-size presets, one row per preset and component: the model's size *and* the recipe it trains with
(batch, learning rate, epochs, warm-up, EMA), from scratch and when fine-tuning with `--init`, as edm2's
`config_presets` keeps them together. Stages look a row up by name (`--preset small`); every recipe value
is only a default that a command-line flag overrides. docs/presets.md has the measurements behind the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, TypeVar

from latentdiff.errors import UserError

PRESET_NAMES = ("tiny", "small", "base")
T = TypeVar("T")


@dataclass(frozen=True)
class Recipe:
    """How a stage trains when the user does not say: each field is the default of the flag of its name."""

    batch_size: int
    lr: float
    epochs: int
    warmup_steps: int = 0
    ema_decay: float = 0.0  # 0: no EMA


# A small CLIP learns fast from scratch at 5e-4; fine-tuning a pretrained one keeps what it knows at 1e-5.
CLIP_SCRATCH = Recipe(batch_size=32, lr=5e-4, epochs=30)
CLIP_FINETUNE = Recipe(batch_size=8, lr=1e-5, epochs=5)
# A small VAE takes a high LR well (warm-up free, cosine); SD's VAE fine-tunes used 1e-5-order LRs.
VAE_SCRATCH = Recipe(batch_size=16, lr=1e-3, epochs=5)
VAE_FINETUNE = Recipe(batch_size=8, lr=1e-5, epochs=2)
# 2e-4 is stable for these small U-Nets with gradient clipping; 20 emoji epochs is `small`'s hour. The
# usual Stable Diffusion fine-tuning recipe (batch 8, lr 1e-5). The exported pipeline uses the EMA weights.
UNET_SCRATCH = Recipe(batch_size=32, lr=2e-4, epochs=20, ema_decay=0.999)
UNET_FINETUNE = Recipe(batch_size=8, lr=1e-5, epochs=5, ema_decay=0.999)


@dataclass(frozen=True)
class ClipPreset:
    image_size: int
    text_width: int
    text_layers: int
    text_heads: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    patch_size: int
    projection_dim: int
    vocab_size: int  # size of the BPE vocabulary trained on the captions when starting from scratch
    max_text_tokens: int  # tokenizer.model_max_length; longer prompts are truncated with a warning
    scratch: Recipe = CLIP_SCRATCH
    finetune: Recipe = CLIP_FINETUNE


@dataclass(frozen=True)
class VaePreset:
    image_size: int
    block_out_channels: tuple[int, ...]  # one entry per resolution; downsampling factor 2**(len-1)
    layers_per_block: int
    latent_channels: int
    norm_num_groups: int = 32  # GroupNorm groups in every ResNet block; must divide each width (SD: 32)
    scratch: Recipe = VAE_SCRATCH
    finetune: Recipe = VAE_FINETUNE


@dataclass(frozen=True)
class UnetPreset:
    block_out_channels: tuple[int, ...]
    layers_per_block: int
    attention_head_dim: int
    # which resolutions have cross-attention to the text (True) or are plain ResNet blocks (False)
    cross_attention_levels: tuple[bool, ...]
    norm_num_groups: int = 32  # GroupNorm groups in every block; must divide each width (SD: 32)
    scratch: Recipe = UNET_SCRATCH
    finetune: Recipe = UNET_FINETUNE


CLIP_PRESETS: dict[str, ClipPreset] = {
    # 0.11M params: a test run of a few steps takes seconds
    "tiny": ClipPreset(64, 32, 2, 2, 32, 2, 2, 16, 32, 1000, 32),
    # 2.31M params (1.05M the embedding), 140 samples/s on the idle 2-core CPU: ~5 emoji epochs in 10 min
    "small": ClipPreset(64, 128, 3, 2, 128, 3, 2, 8, 128, 8192, 32),
    # OpenAI CLIP ViT-B/32's shape, for a GPU
    "base": ClipPreset(224, 512, 12, 8, 768, 12, 12, 32, 512, 49408, 77),
}

VAE_PRESETS: dict[str, VaePreset] = {
    # 0.24M params, f=4 (latents 4x16x16 at 64 px): faster than f=2 and 4x fewer latent cells for the U-Net
    "tiny": VaePreset(64, (16, 32, 32), 1, 4, norm_num_groups=16),
    # 2.70M params, f=4 (LDM-4, the best quality/speed trade-off in Rombach et al. 2022, Sec. 4.1)
    "small": VaePreset(64, (32, 64, 128), 1, 4, norm_num_groups=32),
    # Stable Diffusion's VAE (83.65M params, f=8), for 256 px on a GPU
    "base": VaePreset(256, (128, 256, 512, 512), 2, 4, norm_num_groups=32),
}

UNET_PRESETS: dict[str, UnetPreset] = {
    # 0.99M params: a test run of a few steps takes seconds
    "tiny": UnetPreset((32, 64), 1, 8, (False, True)),
    # 4.22M params, 75 samples/s on the idle CPU: 32 channels at 16x16 (no attention there) are 2.3x faster
    # than 64, so twice the epochs fit the hour
    "small": UnetPreset((32, 64, 128), 1, 32, (False, True, True)),
    # Stable Diffusion 1.x's U-Net, for a GPU
    "base": UnetPreset((320, 640, 1280, 1280), 2, 64, (True, True, True, False)),
}


def lookup_preset(table: Mapping[str, T], name: str, component: str) -> T:
    if name not in table:
        raise UserError(f"Unknown {component} preset '{name}'; choose one of: {', '.join(table)}.")
    return table[name]


def recipe_help(table: Mapping[str, ClipPreset | VaePreset | UnetPreset], name: str) -> str:
    """The "(default: ...)" of a recipe flag in --help, read from the rows: "32 from scratch, 8 with --init"
    when every preset agrees, else per preset."""
    scratch = {preset: getattr(row.scratch, name) for preset, row in table.items()}
    finetune = {preset: getattr(row.finetune, name) for preset, row in table.items()}
    if len(set(scratch.values())) == 1 and len(set(finetune.values())) == 1:
        return f"(default: {scratch['tiny']:g} from scratch, {finetune['tiny']:g} with --init)"
    per_preset = ", ".join(f"{p} {scratch[p]:g}/{finetune[p]:g}" for p in table)
    return f"(default, from scratch/with --init, by --preset: {per_preset})"
