"""Typed configuration: the model-size presets table and one dataclass per stage.

Stage options are declared once as dataclass fields (`latentdiff.options.option` / `positional`), which
become the command-line flags and the config saved next to every output.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

from latentdiff.backends import BACKENDS
from latentdiff.errors import UserError
from latentdiff.options import option, positional
# the server's bounds live with its other limits (a module with no heavy imports)
from latentdiff.server.limits import DEFAULT_MAX_BATCH_IMAGES, DEFAULT_MAX_JOB_SECONDS, DEFAULT_MAX_QUEUE

T = TypeVar("T")


# ----------------------------------------------------------------------------------------------
# Model-size presets. One table per component; stages look presets up by name (`--preset tiny`).
# The numbers are chosen by measurement on the 2-core development machine; see each entry's comment.
# ----------------------------------------------------------------------------------------------

PRESET_NAMES = ("tiny", "small", "base")


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


@dataclass(frozen=True)
class VaePreset:
    image_size: int
    block_out_channels: tuple[int, ...]  # one entry per resolution; downsampling factor 2**(len-1)
    layers_per_block: int
    latent_channels: int
    # GroupNorm groups in every ResNet block; must divide each width (SD uses 32; tiny widths need fewer)
    norm_num_groups: int = 32


@dataclass(frozen=True)
class UnetPreset:
    block_out_channels: tuple[int, ...]
    layers_per_block: int
    attention_head_dim: int
    # which resolutions have cross-attention to the text (True) or are plain ResNet blocks (False)
    cross_attention_levels: tuple[bool, ...]
    # GroupNorm groups in every block; must divide each width (SD uses 32)
    norm_num_groups: int = 32


# CLIP training speed (benchmarks/bench_train_clip.py, batch 32, fp32, 2 cores, measured while the machine
# ran other jobs at load ~8, so an idle machine is about 2-4x faster): tiny 0.11M params, 6-15 samples/s;
# small 8.6M params (2.1M of them the 8192-token embedding), ~3 samples/s.
# Re-measured for the bundled default model (issue 6; batch 32, 2 threads, 64 px, patch 8 = 64 image tokens,
# 32 text tokens: the emoji names in all 14 languages are at most 26 tokens, 99% at most 15):
#   width 256, 4+4 layers: 8.62M params, 45 samples/s on the idle machine (7 samples/s under load ~5)
#   width 192, 3+3 layers: 4.37M params, 108 samples/s idle (16 under load)
#   small = width 128, 3+3 layers, 2 heads: 2.31M params (1.05M of them the embedding), 140 samples/s idle,
#         23 under load ~5 with 2 threads: the one that fits ~5 emoji epochs into ~10 minutes on a shared CPU.
# Under load, 2 threads thrash: 1 thread was 3.5x faster than 2 while another job used a core (VAE below).
CLIP_PRESETS: dict[str, ClipPreset] = {
    "tiny": ClipPreset(64, 32, 2, 2, 32, 2, 2, 16, 32, 1000, 32),
    "small": ClipPreset(64, 128, 3, 2, 128, 3, 2, 8, 128, 8192, 32),
    "base": ClipPreset(224, 512, 12, 8, 768, 12, 12, 32, 512, 49408, 77),
}

# Measured on the 2-core dev machine (fp32, AdamW, one encode+sample+decode+backward step, shared CPU):
#   (16, 32) f=2:          0.17M params, latents 4x32x32 at 64 px, 23 samples/s (batch 8)
#   tiny  (16, 32, 32) f=4: 0.24M params, latents 4x16x16 at 64 px, 31 samples/s (batch 8): faster than
#         f=2 and gives the U-Net 4x fewer latent cells
#   (64, 128, 128) f=4:    3.79M params, 3.3 samples/s: 64 channels at full resolution dominate the cost
#   small (32, 64, 128) f=4: 2.70M params, latents 4x16x16 at 64 px, 12.6 samples/s (batch 8): about
#         11k images (3 epochs of the emoji set) in 15 minutes. f=4 is LDM-4, the best quality/speed
#         trade-off in Rombach et al. 2022 (Sec. 4.1).
#   small re-measured (issue 6, batch 16, fp32): 2 threads 1.5 samples/s and 1 thread 5.4 samples/s while another
#         job used one core (load ~3.5): a shared CPU wants OMP_NUM_THREADS=1.
#   base  (128, 256, 512, 512) f=8, 2 layers: 83.65M params (Stable Diffusion's VAE), latents 4x32x32 at
#         256 px; ~200 s per batch-2 step here, a GPU-sized model.
VAE_PRESETS: dict[str, VaePreset] = {
    "tiny": VaePreset(64, (16, 32, 32), 1, 4, norm_num_groups=16),
    "small": VaePreset(64, (32, 64, 128), 1, 4, norm_num_groups=32),
    "base": VaePreset(256, (128, 256, 512, 512), 2, 4, norm_num_groups=32),
}

# Measured on the 2-core dev machine while it was shared (load average ~8, 1 thread: 2 threads thrash
# under that load), fp32, AdamW, one forward+backward+step at batch 32 on 4x16x16 latents (64 px through
# the f=4 VAE presets), 77 text tokens of width 256 (32 tokens of width 32 for tiny); head size 32:
#   tiny  (32, 64) 1 layer:             0.99M params, 30 samples/s: a test run of a few steps takes seconds
#   small (64, 128, 128) 1 layer:       6.94M params, 10.7 samples/s (U-Net alone; the whole cached train-unet
#         step measured 6.7 samples/s by benchmarks/bench_train_unet.py on the same shared machine): the
#         largest of these that keeps 20 epochs of the ~3,800-image emoji set (76k samples) near an hour
#         (that needs ~21 samples/s: the machine unshared; not measured unshared here).
#   (64, 128, 128) 2 layers:            10.4M params, 4.7 samples/s;  (96, 192, 192) 1 layer: 15.3M, 5.3/s;
#   (64, 128, 256) 1 layer:             16.8M params, 5.3 samples/s;  (128, 256, 256) 2 layers: 40.2M, 1.6/s:
#         each 2-6x slower than small for a 64 px emoji set, so not the default.
#   base  (320, 640, 1280, 1280) 2 layers, head 64: Stable Diffusion 1.x's U-Net, 853M params with CLIP base
#         (text width 512); for 256 px on a GPU (4x32x32 latents through the f=8 VAE base); not timed here.
# Re-measured for the bundled default model (issue 6; batch 32, 2 threads, U-Net alone, 32 text tokens of
# width 128 = CLIP small): (64, 128, 128) 6.72M params, 31.9 samples/s on the idle machine, 2.2 under load ~5;
# small = (32, 64, 128) 1 layer: 4.22M params, 75.1 samples/s idle, 5.0 under load ~5: 32 instead of 64
# channels at the 16x16 level (no attention there) make it 2.3x faster, so twice the epochs fit the hour.
# (64, 128) with attention at both levels: 4.28M params, 2.5 samples/s under load ~5.
UNET_PRESETS: dict[str, UnetPreset] = {
    "tiny": UnetPreset((32, 64), 1, 8, (False, True)),
    "small": UnetPreset((32, 64, 128), 1, 32, (False, True, True)),
    "base": UnetPreset((320, 640, 1280, 1280), 2, 64, (True, True, True, False)),
}


def lookup_preset(table: dict[str, T], name: str, component: str) -> T:
    if name not in table:
        raise UserError(f"Unknown {component} preset '{name}'; choose one of: {', '.join(table)}.")
    return table[name]


# ----------------------------------------------------------------------------------------------
# Stage configs
# ----------------------------------------------------------------------------------------------


@dataclass
class PrepareDataConfig:
    source: str = positional("a built-in source (shapes, emoji, clipart, fashion-mnist) or a user dataset kind (flickr8k, coco, folder)")
    path: str | None = positional("the dataset folder (for flickr8k, coco, folder)", default=None, nargs="?")
    out: str = option("", "where to write the prepared dataset (an imagefolder tree + manifest.json)")
    image_size: int = option(64, "side of the square images written, in pixels")
    languages: list[str] = option(["en"], "caption languages for the emoji source, comma-separated (e.g. en,fr,zh)")
    max_images: int = option(0, "keep at most this many images (0: all); handy for quick trials")
    seed: int = option(0, "seed for generated sources (shapes) and the deterministic split")
    num_images: int = option(2000, "how many scenes the shapes source generates")
    follow_symlinks: bool = option(False, "read images and caption files through symlinks that point outside "
                                          "the dataset folder (names with '..' or absolute paths in caption "
                                          "files are refused either way)")


@dataclass
class TrainConfig:
    """Options every training stage shares (the one training loop reads these). Stage configs subclass it.

    `batch_size`, `lr` and `epochs` default to None, meaning "the stage's default" (which may differ
    from scratch and with --init); a stage fills them with `cfg.with_defaults(...)` before training, so
    a value the user typed is never overridden.
    """

    data: str = option("", "the prepared dataset folder (from `latentdiff prepare-data`)")
    out: str = option("", "output folder; rerunning with the same --out resumes an interrupted run")
    init: str | None = option(None, "a pretrained folder or hub id to start from instead of a preset")
    preset: str = option("tiny", "model size when training from scratch", choices=PRESET_NAMES)
    seed: int = option(0, "seed for weights init, data order and every random draw (a run is reproducible)")
    max_steps: int = option(0, "optimizer steps to train (0: derived from --epochs)")
    max_minutes: float = option(0.0, "train for about this many minutes of wall time: the step count (at most the "
                                     "--max-steps/--epochs one) is fixed from the speed of the first steps, so the LR "
                                     "schedule still ends on time (0: off)")
    epochs: int | None = option(None, "passes over the training split when --max-steps is 0 (default: the stage's)")
    batch_size: int | None = option(None, "images per optimizer step per process, before accumulation (default: the stage's)")
    lr: float | None = option(None, "peak learning rate of AdamW (default: the stage's)")
    lr_scheduler: str = option("cosine", "LR schedule after warmup", choices=("constant", "linear", "cosine"))
    warmup_steps: int = option(0, "optimizer steps of linear LR warmup from 0")
    weight_decay: float = option(0.01, "AdamW decoupled weight decay")
    grad_accum_steps: int = option(1, "micro-batches accumulated per optimizer step")
    max_grad_norm: float = option(1.0, "clip the gradients' global L2 norm to this (0: no clipping)")
    ema_decay: float = option(0.0, "decay of an exponential moving average of the weights, used for export (0: off)")
    validate_every: int = option(0, "run validation every N optimizer steps (0: only at the end)")
    checkpoint_every: int = option(100, "write resumable training state every N optimizer steps (0: only at the end)")
    keep_checkpoints: int = option(2, "how many of the latest training-state checkpoints to keep")
    mixed_precision: str = option("auto", "accelerate mixed precision (auto: bf16 on CUDA cards that support it, else fp32)",
                                  choices=("auto", "no", "fp16", "bf16"))
    num_workers: int = option(0, "DataLoader worker processes (0: load in the training process)")
    allow_pickle: bool = option(False, "allow loading --init weights from pickled .bin/.pt files (they can run code; prefer safetensors)")

    def with_defaults(self, **defaults: Any):
        """A copy with every field that is None replaced by `defaults[name]` (user-set values win)."""
        updates = {name: value for name, value in defaults.items() if getattr(self, name) is None}
        return dataclasses.replace(self, **updates)


# Each training stage's batch_size / lr / epochs when the user gives none: from scratch, and with --init.
# train-clip's fine-tuning row is the seed recipe for fine-tuning a pretrained CLIP.
CLIP_SCRATCH_DEFAULTS = {"batch_size": 32, "lr": 5e-4, "epochs": 30}
CLIP_FINETUNE_DEFAULTS = {"batch_size": 8, "lr": 1e-5, "epochs": 5}
# From scratch a small VAE takes a high LR well (AdamW, warmup-free, cosine); fine-tuning a pretrained VAE
# uses a small one so it keeps what it knows (Stable Diffusion's VAE fine-tunes used 1e-5 order LRs).
VAE_SCRATCH_DEFAULTS = {"batch_size": 16, "lr": 1e-3, "epochs": 5}
VAE_FINETUNE_DEFAULTS = {"batch_size": 8, "lr": 1e-5, "epochs": 2}
# U-Net from scratch: AdamW at 2e-4 is stable for these small U-Nets with gradient clipping; 20 epochs of
# the ~3,800-image emoji set is the hour budget of `small` (see the measurements above UNET_PRESETS).
# Fine-tuning a pretrained U-Net: the usual Stable Diffusion fine-tuning recipe (batch 8, lr 1e-5).
UNET_SCRATCH_DEFAULTS = {"batch_size": 32, "lr": 2e-4, "epochs": 20}
UNET_FINETUNE_DEFAULTS = {"batch_size": 8, "lr": 1e-5, "epochs": 5}


def _stage_default(scratch: dict[str, Any], finetune: dict[str, Any], name: str) -> str:
    """The help's "(default: ...)" of a stage's batch_size / lr / epochs, from the tables above."""
    return f"(default: {scratch[name]:g} from scratch, {finetune[name]:g} with --init)"


def _clip_default(name: str) -> str:
    return _stage_default(CLIP_SCRATCH_DEFAULTS, CLIP_FINETUNE_DEFAULTS, name)


@dataclass
class ClipTrainConfig(TrainConfig):
    """`latentdiff train-clip`: contrastive CLIP training (defaults in CLIP_*_DEFAULTS above)."""

    epochs: int | None = option(None, f"passes over the training split when --max-steps is 0 {_clip_default('epochs')}")
    batch_size: int | None = option(None, f"image-caption pairs per step per process {_clip_default('batch_size')}")
    lr: float | None = option(None, f"peak AdamW learning rate {_clip_default('lr')}")
    checkpoint_every: int = option(200, "write resumable training state every N optimizer steps (0: only at the end)")
    validate_every: int = option(200, "run retrieval validation every N optimizer steps (0: only at the end)")


@dataclass
class UnetTrainConfig(TrainConfig):
    """`latentdiff train-unet`: the latent denoiser, conditioned on a frozen CLIP text encoder, in the latent
    space of a frozen VAE (defaults in UNET_*_DEFAULTS above)."""

    epochs: int | None = option(None, "passes over the training split when --max-steps is 0 "
                                      + _stage_default(UNET_SCRATCH_DEFAULTS, UNET_FINETUNE_DEFAULTS, "epochs"))
    batch_size: int | None = option(None, "images per optimizer step per process, before accumulation "
                                          + _stage_default(UNET_SCRATCH_DEFAULTS, UNET_FINETUNE_DEFAULTS, "batch_size"))
    lr: float | None = option(None, "peak learning rate of AdamW "
                                    + _stage_default(UNET_SCRATCH_DEFAULTS, UNET_FINETUNE_DEFAULTS, "lr"))
    clip: str = option("", "the CLIP folder (from `latentdiff train-clip`) whose text encoder and tokenizer condition the U-Net")
    vae: str = option("", "the VAE folder (from `latentdiff train-vae`) whose latent space the U-Net denoises")
    prediction_type: str = option("epsilon", "what the U-Net predicts: the noise (epsilon) or the velocity (v_prediction)",
                                  choices=("epsilon", "v_prediction"))
    zero_terminal_snr: bool = option(False, "rescale the noise schedule so the last step is pure noise, and sample from "
                                            "it with trailing timesteps (Lin et al. 2024; needs --prediction-type v_prediction)")
    text_time_embedding: bool = option(False, "also add an attention-pooled text embedding to the time embedding "
                                              "(diffusers addition_embed_type='text'), so every ResNet block sees the prompt")
    snr_gamma: float = option(0.0, "min-SNR-gamma loss weighting (Hang et al. 2023; 5.0 is the paper's choice; 0: off)")
    noise_offset: float = option(0.0, "std of a per-channel noise offset (0.05-0.1 helps very dark/bright images; 0: off)")
    caption_dropout: float = option(0.1, "fraction of steps trained on the empty prompt, for classifier-free guidance")
    cache: bool = option(True, "encode images and captions once and cache them on disk (--no-cache: encode every step)")
    cache_dir: str = option("", "where the latent/text caches live (default: DATA/.latentdiff-cache)")
    ema_decay: float = option(0.999, "decay of the EMA of the U-Net weights used for the exported pipeline (0: off)")
    validation_prompts: list[str] = option([], "prompts of the sample grid written at each validation (default: validation captions)")
    num_validation_prompts: int = option(8, "validation captions in the sample grid when --validation-prompts is not given (0: no grid)")
    validation_images: int = option(64, "validation images for the validation loss (0: all)")
    sample_steps: int = option(25, "denoising steps of the validation sample grid")
    checkpoint_every: int = option(500, "write resumable training state every N optimizer steps (0: only at the end)")
    validate_every: int = option(500, "compute validation loss and write a sample grid every N optimizer steps (0: only at the end)")


@dataclass
class VaeTrainConfig(TrainConfig):
    """`latentdiff train-vae`: an AutoencoderKL trained with reconstruction + KL (defaults in VAE_*_DEFAULTS above)."""

    epochs: int | None = option(None, "passes over the training split when --max-steps is 0 "
                                      + _stage_default(VAE_SCRATCH_DEFAULTS, VAE_FINETUNE_DEFAULTS, "epochs"))
    batch_size: int | None = option(None, "images per optimizer step per process, before accumulation "
                                          + _stage_default(VAE_SCRATCH_DEFAULTS, VAE_FINETUNE_DEFAULTS, "batch_size"))
    lr: float | None = option(None, "peak learning rate of AdamW "
                                    + _stage_default(VAE_SCRATCH_DEFAULTS, VAE_FINETUNE_DEFAULTS, "lr"))
    reconstruction_loss: str = option("l1", "pixel reconstruction loss: l1 (sharper, as in LDM) or mse (what PSNR measures)",
                                      choices=("l1", "mse"))
    crop_size: int = option(0, "train on random square crops of this many pixels (a multiple of the VAE's downsampling "
                               "factor): the VAE is fully convolutional, so each step costs less and still learns "
                               "to reconstruct whole images, as Stable Diffusion's VAE (256 px crops) does (0: whole images)")
    colour_weight: float = option(0.0, "weight of an L1 term on the mean colours of 4x4-pixel cells, against hue "
                                       "shifts of flat areas that a per-pixel loss barely sees (0: off)")
    decoder_only: bool = option(False, "train only the decoder (the encoder, and so the latent space a U-Net was "
                                       "trained in, stays fixed), as Stable Diffusion's ft-MSE VAE was fine-tuned")
    kl_weight: float = option(1e-6, "weight of the KL term relative to the per-pixel reconstruction loss (LDM: 1e-6)")
    scaling_images: int = option(1024, "training images whose latents' std sets the exported scaling_factor (1/std)")
    validation_images: int = option(256, "validation images used for PSNR (0: all)")
    checkpoint_every: int = option(200, "write resumable training state every N optimizer steps (0: only at the end)")
    validate_every: int = option(200, "run PSNR validation and write a reconstruction grid every N optimizer steps (0: only at the end)")


def _per_stage(name: str) -> str:
    """"train-clip 30, train-vae 5, train-unet 20": each stage's default of `name` when `train` runs it."""
    stages = (("train-clip", ClipTrainConfig, CLIP_SCRATCH_DEFAULTS), ("train-vae", VaeTrainConfig, VAE_SCRATCH_DEFAULTS),
              ("train-unet", UnetTrainConfig, UNET_SCRATCH_DEFAULTS))
    return ", ".join(f"{stage} {scratch.get(name, cls.__dataclass_fields__[name].default):g}"
                     for stage, cls, scratch in stages)


@dataclass
class TrainAllConfig:
    """`latentdiff train`: train-clip, train-vae and train-unet in order into OUT/clip, OUT/vae and
    OUT/pipeline. Options left unset (None / 0) take each stage's own default."""

    data: str = option("", "the prepared dataset folder (from `latentdiff prepare-data`)")
    out: str = option("", "the run folder (clip/, vae/, pipeline/ inside); rerunning with the same --out resumes")
    preset: str = option("tiny", "model size of all three models", choices=PRESET_NAMES)
    seed: int = option(0, "seed of every stage (a run is reproducible)")
    max_steps: int = option(0, "optimizer steps of each stage (0: each stage's default epochs)")
    clip_max_steps: int = option(0, "optimizer steps of train-clip (0: --max-steps)")
    vae_max_steps: int = option(0, "optimizer steps of train-vae (0: --max-steps)")
    unet_max_steps: int = option(0, "optimizer steps of train-unet (0: --max-steps)")
    epochs: int | None = option(None, "passes over the training split of each stage when its max steps are 0 "
                                      f"(default: each stage's own: {_per_stage('epochs')})")
    batch_size: int | None = option(None, f"images per optimizer step of each stage (default: each stage's own: "
                                          f"{_per_stage('batch_size')})")
    checkpoint_every: int | None = option(None, "training-state checkpoint every N steps in each stage "
                                                f"(default: each stage's own: {_per_stage('checkpoint_every')})")
    validate_every: int | None = option(None, "validation every N steps in each stage "
                                              f"(default: each stage's own: {_per_stage('validate_every')})")
    mixed_precision: str = option("auto", "accelerate mixed precision (auto: bf16 on CUDA cards that support it, else fp32)",
                                  choices=("auto", "no", "fp16", "bf16"))
    num_workers: int = option(0, "DataLoader worker processes (0: load in the training process)")


# Generation defaults: one place for the numbers that `generate`, `evaluate` and `serve` share.
DEFAULT_SCHEDULER = "dpmpp-2m"  # a name in latentdiff.diffusion.schedulers.SCHEDULERS
DEFAULT_GENERATION_STEPS = 25
DEFAULT_GUIDANCE = 7.5  # classifier-free guidance scale (Ho & Salimans 2022); <= 1 turns guidance off


@dataclass
class GenerateConfig:
    """`latentdiff generate PROMPT...`: images from a pipeline folder, one PNG per image."""

    prompts: list[str] = positional("one or more prompts (quote each one)", default=[], nargs="*")
    model: str | None = option(None, "a pipeline folder or Hugging Face Hub id (default: the bundled model)")
    negative_prompt: str = option("", "what the images should not show")
    num_images: int = option(1, "images per prompt")
    seed: int | None = option(None, "seed of the first image; image i uses seed+i (default: random, printed)")
    steps: int = option(DEFAULT_GENERATION_STEPS, "denoising steps")
    guidance: float = option(DEFAULT_GUIDANCE, "classifier-free guidance scale (<= 1: off)")
    scheduler: str = option(DEFAULT_SCHEDULER, "sampler: ddpm, ddim, euler, euler-a, heun, dpmpp-2m, dpmpp-2m-karras, unipc, lms")
    width: int | None = option(None, "image width in pixels (default: the model's training size)")
    height: int | None = option(None, "image height in pixels (default: the model's training size)")
    init_image: str | None = option(None, "img2img: start from this picture (PNG, JPEG...; resized to the "
                                          "output size) instead of pure noise")
    strength: float = option(0.75, "img2img: how far --init-image is noised, above 0 (close to it) to 1 "
                                   "(ignore its content); runs int(steps x strength) steps")
    out: str = option("outputs", "folder for the PNGs (created if needed)")
    batch_size: int | None = option(None, "images denoised at once (default: as many as fit in memory)")
    device: str | None = option(None, "cpu, cuda, cuda:1, mps (default: the best available)")
    backend: str | None = option(None, "what runs the networks: torch, onnx (ONNX Runtime) or openvino; a pipeline "
                                       "folder is exported once and reused (default: torch, or an export's own format)",
                                 choices=BACKENDS)
    keep_alive: float | None = option(None, "seconds a background worker keeps the model loaded after this call, "
                                            "so the next generate skips loading it (0: no worker; default: "
                                            "$LATENTDIFF_KEEP_ALIVE if set, else 300)",
                                     allow_inf=True)  # inf: as long as allowed (24 h)


@dataclass
class ExportConfig:
    """`latentdiff export [MODEL] --format onnx|openvino --out DIR`: a pipeline's text encoder, U-Net and VAE
    for ONNX Runtime or OpenVINO, in optimum's StableDiffusion layout (latentdiff.export.layout)."""

    model: str | None = positional("a pipeline folder or Hugging Face Hub id (default: the bundled model)",
                                   default=None, nargs="?")
    format: str = option("onnx", "onnx (ONNX Runtime) or openvino (OpenVINO IR, fp32)", choices=("onnx", "openvino"))
    out: str = option("", "folder for the export (new, empty, or an earlier export, which is replaced)")
    skip_check: bool = option(False, "do not compare one image from the export with PyTorch's after exporting")


@dataclass
class EvaluateConfig:
    """`latentdiff evaluate --model M --data DIR`: metrics.json + report.md for a pipeline, CLIP or VAE
    folder on one split of a prepared dataset. What the folder is decides what is measured."""

    model: str = option("", "a pipeline folder (or hub id), a CLIP folder or a VAE folder")
    data: str = option("", "the prepared dataset folder (from `latentdiff prepare-data`)")
    split: str = option("test", "the split measured on", choices=("train", "validation", "test"))
    num_samples: int = option(0, "images of the split used, in file order, one generated per caption (0: all)")
    steps: int = option(DEFAULT_GENERATION_STEPS, "denoising steps")
    guidance: float = option(DEFAULT_GUIDANCE, "classifier-free guidance scale (<= 1: off)")
    scheduler: str = option(DEFAULT_SCHEDULER, "sampler: ddpm, ddim, euler, euler-a, heun, dpmpp-2m, dpmpp-2m-karras, unipc, lms")
    seed: int = option(0, "seed of the first generated image; image i uses seed+i")
    guidance_sweep: list[float] = option([], "also measure fidelity and CLIP score at these guidance scales (e.g. 1,3,5,7)")
    clip: str | None = option(None, "the CLIP folder the pipeline was trained with, for CLIP score and retrieval "
                                    "(default: a `clip` folder beside or inside the pipeline, if there is one)")
    inception_weights: str | None = option(None, "a local InceptionV3 FID weights file: also report standard FID (needs torch-fidelity)")
    out: str = option("evaluation", "folder for metrics.json, report.md, images and plots")
    batch_size: int = option(8, "images generated at once (fixed, so numbers do not depend on free memory)")
    device: str | None = option(None, "cpu, cuda, cuda:1, mps (default: the best available)")
    backend: str | None = option(None, "what runs the networks: torch, onnx (ONNX Runtime) or openvino; a pipeline "
                                       "folder is exported once and reused (default: torch, or an export's own format)",
                                 choices=BACKENDS)


@dataclass
class ServeConfig:
    """`latentdiff serve`: the web page, the AUTOMATIC1111- and OpenAI-compatible APIs over one queue."""

    model: str | None = option(None, "a pipeline folder or Hugging Face Hub id (default: the bundled model)")
    models_dir: str | None = option(None, "also offer every pipeline folder inside this folder (e.g. runs/); "
                                          "clients switch with /sdapi/v1/options sd_model_checkpoint")
    host: str = option("127.0.0.1", "address to listen on; anything but loopback exposes the model and needs an API key")
    port: int = option(7860, "TCP port (0: any free port, printed at start)")
    api_key: str = option("", "require this key on every API call (Authorization: Bearer KEY or x-api-key); "
                              "visible in `ps`, so prefer --api-key-file or $LATENTDIFF_API_KEY; "
                              "default: $LATENTDIFF_API_KEY if set, else no key")
    api_key_file: str = option("", "read the API key from this file (its whole content, stripped)")
    insecure_no_key: bool = option(False, "allow a --host other than loopback without an API key (anyone who "
                                          "can reach the port can use the model)")
    allowed_hosts: list[str] = option([], "more names clients may address this server by (Host header), e.g. "
                                          "a reverse proxy's; '*' allows any (turns the DNS-rebinding guard off)")
    max_queue: int = option(DEFAULT_MAX_QUEUE, "jobs that may wait at once; more are answered 429 with Retry-After")
    max_batch: int = option(DEFAULT_MAX_BATCH_IMAGES, "most images from compatible requests denoised in one model call")
    max_request_cost: float | None = option(None, "most megapixel-steps one request may ask for: width x height "
                                                  "x U-Net evaluations (steps, 2x for Heun, 2x with guidance > 1) x "
                                                  "images / 1e6; more is answered 413 (default: 16 images of 50 "
                                                  "guided steps at the model's native size)")
    max_job_seconds: float = option(DEFAULT_MAX_JOB_SECONDS, "a running job is stopped after this many seconds "
                                                             "and its client gets an error")
    device: str | None = option(None, "cpu, cuda, cuda:1, mps (default: the best available)")
    backend: str | None = option(None, "what runs the networks: torch, onnx (ONNX Runtime) or openvino; a pipeline "
                                       "folder is exported once and reused (default: torch, or an export's own format)",
                                 choices=BACKENDS)


@dataclass
class PsConfig:
    """`latentdiff ps`: the keep-alive workers and servers running for this user (as `ollama ps`)."""


@dataclass
class StopConfig:
    """`latentdiff stop [TARGET...]`: end keep-alive workers and servers (as `ollama stop`)."""

    targets: list[str] = positional("which to stop: a PID, or a model name or folder as `latentdiff ps` shows it "
                                    "(none: all of them)", default=[], nargs="*")
