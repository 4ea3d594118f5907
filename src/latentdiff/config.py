"""Typed configuration: one dataclass per stage (the model-size presets and their recipes: presets.py).

Stage options are declared once as dataclass fields (`latentdiff.options.option` / `positional`), which
become the command-line flags and the config saved next to every output.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from latentdiff.generation_defaults import (BACKEND_HELP, BACKENDS, DEFAULT_GENERATION_STEPS, DEFAULT_SCHEDULER,
                                           EXPORT_WEIGHTS, GUIDANCE_HELP, MODEL_HELP, SCHEDULER_NAMES, THREADS_HELP)
from latentdiff.limits import DEFAULT_MAX_BATCH_IMAGES, DEFAULT_MAX_JOB_SECONDS, DEFAULT_MAX_QUEUE
from latentdiff.options import hidden_option, option, positional
from latentdiff.presets import CLIP_PRESETS, PRESET_NAMES, UNET_PRESETS, VAE_PRESETS, recipe_help

# The VAE loss's choices and default, here (not in losses.vae) so that the CLI lists them without importing torch
VAE_RECONSTRUCTION_LOSSES = ("l1", "mse")
VAE_RECONSTRUCTION_LOSS = "l1"  # sharper than mse, as in LDM
VAE_COLOUR_SPACES = ("rgb", "lab")
VAE_COLOUR_CELL_SIZE = 4  # pixels per side of the cells whose mean colours the VAE's colour term compares
VAE_KL_WEIGHT = 1e-6  # LDM's kl_weight for its KL-regularised autoencoders
# How train-unet draws training timesteps: the names of diffusers' compute_density_for_timestep_sampling
UNET_TIMESTEP_SAMPLINGS = ("uniform", "logit_normal")


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
    format: str = option("imagefolder", "how images are stored: one PNG per image (imagefolder) or tar shards "
                                        "(webdataset: few large files, for COCO-sized and larger datasets)",
                         choices=("imagefolder", "webdataset"))
    samples_per_shard: int = option(1000, "images per tar shard with --format webdataset")
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
    stop_at_step: int = option(0, "stop after this optimizer step with its training state saved, without exporting: the "
                                  "same command without it (or with a later step) goes on along the same LR schedule, "
                                  "and `latentdiff export-checkpoint` writes a train-unet run's pipeline of that step "
                                  "(0: train to the end)")
    validate_every: int = option(0, "run validation every N optimizer steps (0: only at the end)")
    checkpoint_every: int = option(100, "write resumable training state every N optimizer steps (0: only at the end)")
    keep_checkpoints: int = option(2, "how many of the latest training-state checkpoints to keep")
    mixed_precision: str = option("auto", "accelerate mixed precision (auto: bf16 on CUDA cards that support it, else fp32)",
                                  choices=("auto", "no", "fp16", "bf16"))
    num_workers: int = option(0, "DataLoader worker processes (0: load in the training process)")
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass instead of keeping them: "
                                                 "much less GPU memory for about a third more compute, same numbers")
    compile: bool = option(False, "torch.compile the trained model (slow first steps, faster long GPU runs)")
    allow_pickle: bool = option(False, "allow loading --init weights from pickled .bin/.pt files (they can run code; prefer safetensors)")

    def with_defaults(self, **defaults: Any):
        """A copy with every field that is None replaced by `defaults[name]` (user-set values win)."""
        updates = {name: value for name, value in defaults.items() if getattr(self, name) is None}
        return dataclasses.replace(self, **updates)


# The help of a recipe flag; its default comes from the --preset row (presets.py) when the user gives none.
RECIPE_HELP = {
    "epochs": "passes over the training split when --max-steps is 0",
    "batch_size": "images per optimizer step per process, before accumulation",
    "lr": "peak learning rate of AdamW",
    "warmup_steps": "optimizer steps of linear LR warmup from 0",
    "ema_decay": "decay of the EMA of the weights that the export uses (0: off)",
}


def recipe_option(table, name: str):
    """A stage's recipe flag: None until the stage fills it from its --preset row (`with_defaults`)."""
    return option(None, f"{RECIPE_HELP[name]} {recipe_help(table, name)}")


@dataclass
class ClipTrainConfig(TrainConfig):
    """`latentdiff train-clip`: contrastive CLIP training (recipe defaults: the --preset row of presets.CLIP_PRESETS)."""

    epochs: int | None = recipe_option(CLIP_PRESETS, "epochs")
    batch_size: int | None = recipe_option(CLIP_PRESETS, "batch_size")
    lr: float | None = recipe_option(CLIP_PRESETS, "lr")
    warmup_steps: int | None = recipe_option(CLIP_PRESETS, "warmup_steps")
    ema_decay: float | None = recipe_option(CLIP_PRESETS, "ema_decay")
    checkpoint_every: int = option(200, "write resumable training state every N optimizer steps (0: only at the end)")
    validate_every: int = option(200, "run retrieval validation every N optimizer steps (0: only at the end)")


@dataclass
class UnetTrainConfig(TrainConfig):
    """`latentdiff train-unet`: the latent denoiser, conditioned on a CLIP text encoder (frozen unless
    --train-text-encoder), in the latent space of a frozen VAE (recipe defaults: presets.UNET_PRESETS)."""

    epochs: int | None = recipe_option(UNET_PRESETS, "epochs")
    batch_size: int | None = recipe_option(UNET_PRESETS, "batch_size")
    lr: float | None = recipe_option(UNET_PRESETS, "lr")
    warmup_steps: int | None = recipe_option(UNET_PRESETS, "warmup_steps")
    ema_decay: float | None = recipe_option(UNET_PRESETS, "ema_decay")
    clip: str = option("", "the CLIP folder (from `latentdiff train-clip`) whose text encoder and tokenizer condition the U-Net")
    vae: str = option("", "the VAE folder (from `latentdiff train-vae`) whose latent space the U-Net denoises")
    prediction_type: str = option("epsilon", "what the U-Net predicts: the noise (epsilon) or the velocity (v_prediction)",
                                  choices=("epsilon", "v_prediction"))
    zero_terminal_snr: bool = option(False, "rescale the noise schedule so the last step is pure noise, and sample from "
                                            "it with trailing timesteps (Lin et al. 2024; needs --prediction-type v_prediction)")
    text_time_embedding: bool = option(False, "also add an attention-pooled text embedding to the time embedding "
                                              "(diffusers addition_embed_type='text'), so every ResNet block sees the prompt")
    timestep_sampling: str = option("uniform", "how training timesteps are drawn: uniformly (DDPM), or logit-normal "
                                               "(SD3, Esser et al. 2024: t/T = sigmoid(N(--logit-mean, --logit-std)); "
                                               "a positive mean trains more at high noise; mean 1 spoiled the "
                                               "emoji drawings, docs/speedrun/emoji-unet-passes.md)",
                                    choices=UNET_TIMESTEP_SAMPLINGS)
    logit_mean: float = option(0.0, "mean of the normal behind --timestep-sampling logit_normal (0: centred on t = T/2)")
    logit_std: float = option(1.0, "std of the normal behind --timestep-sampling logit_normal")
    snr_gamma: float = option(0.0, "min-SNR-gamma loss weighting (Hang et al. 2023; 5.0 is the paper's choice; 0: off)")
    noise_offset: float = option(0.0, "std of a per-channel noise offset (0.05-0.1 helps very dark/bright images; 0: off)")
    input_perturbation: float = option(0.0, "std of extra noise added to the U-Net's noisy input but not to its target "
                                            "(Ning et al. 2023, diffusers' --input_perturbation; 0.1 is the paper's "
                                            "choice): it trains on inputs like the sampler's own slightly-off ones, "
                                            "against exposure bias (0: off)")
    caption_dropout: float = option(0.1, "fraction of steps trained on the empty prompt, for classifier-free guidance")
    clip_skip: int = option(0, "condition on the text encoder's hidden states this many layers before its last "
                               "(diffusers' clip_skip; AUTOMATIC1111's CLIP skip N+1); the saved pipeline keeps only the "
                               "layers used, so it loads and draws unchanged. A small contrastive CLIP's last layers "
                               "keep colour words but wash out shape and position words (0: all layers)")
    train_text_encoder: bool = option(False, "train the text encoder together with the U-Net on the denoising loss "
                                             "(DreamBooth's --train_text_encoder); the pipeline keeps the trained one. "
                                             "Slower per step (captions are encoded every step)")
    text_encoder_lr: float = option(0.0, "peak learning rate of the text encoder with --train-text-encoder (0: --lr)")
    block_out_channels: list[int] = option([], "channels of a new U-Net at each resolution, one per level of the "
                                               "preset (small: 32,64,128): the width ablation of docs/speedrun/emoji-unet-passes.md "
                                               "(empty: the preset's)")
    layers_per_block: int = option(0, "ResNet (and attention) layers per level of a new U-Net: its depth (0: the "
                                      "preset's, 1 for small)")
    transformer_layers_per_block: list[int] = option([], "transformer blocks (self-attention, cross-attention to "
                                                        "the text, feed-forward) in each attention layer, one count "
                                                        "per level from the finest resolution down (the middle block "
                                                        "takes the last; a level without attention keeps 1), e.g. "
                                                        "1,1,2. A new U-Net is built with them; "
                                                        "an --init U-Net with fewer is deepened: the added blocks start "
                                                        "as the identity (their output projections at zero), so "
                                                        "training starts from the --init model's drawings (empty: 1 "
                                                        "everywhere, or the --init U-Net's own)")
    cross_attention_levels: list[int] = option([], "1 or 0 per level of a new U-Net, from the finest resolution down: "
                                                   "whether that level's blocks attend to the text (CrossAttnDownBlock2D) "
                                                   "or are plain ResNet blocks (DownBlock2D); where attention sits "
                                                   "(empty: the preset's, 0,1,1 for small)")
    cache: bool = option(True, "encode images and captions once and cache them on disk (--no-cache: encode every step)")
    cache_dir: str = option("", "where the latent/text caches live (default: DATA/.latentdiff-cache)")
    validation_prompts: list[str] = option([], "prompts of the sample grid written at each validation (default: validation captions)")
    num_validation_prompts: int = option(8, "validation captions in the sample grid when --validation-prompts is not given (0: no grid)")
    validation_images: int = option(64, "validation images for the validation loss (0: all)")
    sample_steps: int = option(25, "denoising steps of the validation sample grid")
    checkpoint_every: int = option(500, "write resumable training state every N optimizer steps (0: only at the end)")
    validate_every: int = option(500, "compute validation loss and write a sample grid every N optimizer steps (0: only at the end)")


@dataclass
class VaeTrainConfig(TrainConfig):
    """`latentdiff train-vae`: an AutoencoderKL trained with reconstruction + KL (recipe defaults: presets.VAE_PRESETS)."""

    epochs: int | None = recipe_option(VAE_PRESETS, "epochs")
    batch_size: int | None = recipe_option(VAE_PRESETS, "batch_size")
    lr: float | None = recipe_option(VAE_PRESETS, "lr")
    warmup_steps: int | None = recipe_option(VAE_PRESETS, "warmup_steps")
    ema_decay: float | None = recipe_option(VAE_PRESETS, "ema_decay")
    reconstruction_loss: str = option(VAE_RECONSTRUCTION_LOSS, "pixel reconstruction loss: l1 (sharper, as in LDM) or mse (what PSNR measures)",
                                      choices=VAE_RECONSTRUCTION_LOSSES)
    crop_size: int = option(0, "train on random square crops of this many pixels (a multiple of the VAE's downsampling "
                               "factor): the VAE is fully convolutional, so each step costs less and still learns "
                               "to reconstruct whole images, as Stable Diffusion's VAE (256 px crops) does (0: whole images)")
    colour_weight: float = option(0.0, "weight of an L1 term on the mean colours of square pixel cells "
                                       "(--colour-cell-size), against hue shifts of flat areas that a per-pixel loss "
                                       "barely sees (0: off)")
    colour_cell_size: int = option(VAE_COLOUR_CELL_SIZE, "pixels per side of the cells whose mean colours the "
                                                          "--colour-weight term compares (1: every pixel, the "
                                                          "per-pixel colour error that CIEDE2000 measures)")
    colour_space: str = option("rgb", "space of the --colour-weight term: rgb, or lab (CIELAB, where equal distances "
                                      "look about equally different, as the CIEDE2000 error we measure)",
                               choices=VAE_COLOUR_SPACES)
    decoder_only: bool = option(False, "train only the decoder (the encoder, and so the latent space a U-Net was "
                                       "trained in, stays fixed), as Stable Diffusion's ft-MSE VAE was fine-tuned")
    kl_weight: float = option(VAE_KL_WEIGHT, "weight of the KL term relative to the per-pixel reconstruction loss (LDM: 1e-6)")
    latent_channels: int = option(0, "channels of each latent cell when training from a preset: more keep more of each "
                                     "image for the decoder (Stable Diffusion 4, SD3 16) and the U-Net models them "
                                     "unchanged in speed (0: the preset's, 4)")
    scaling_images: int = option(1024, "training images whose latents' std sets the exported scaling_factor (1/std)")
    validation_images: int = option(256, "validation images used for PSNR (0: all)")
    checkpoint_every: int = option(200, "write resumable training state every N optimizer steps (0: only at the end)")
    validate_every: int = option(200, "run PSNR validation and write a reconstruction grid every N optimizer steps (0: only at the end)")


@dataclass
class AlignTextConfig(TrainConfig):
    """`latentdiff align-text`: a CLIP's text transformer trained so that one image's captions in every language give
    nearly the same hidden states, the sequence the U-Net cross-attends to (latentdiff.training.text_alignment).
    Defaults: the recipe of the bundled emoji model's text encoder (docs/speedrun/text-encoder.md, "One emoji, one condition")."""

    clip: str = option("", "the CLIP folder to start from (from `latentdiff train-clip`); its vision tower, projections "
                           "and tokenizer are kept")
    init: str | None = hidden_option(None)  # the start is --clip
    preset: str | None = hidden_option(None)  # the model is --clip's, whatever its size
    allow_pickle: bool = option(False, "allow loading --clip weights from pickled .bin/.pt files (they can run code; "
                                       "prefer safetensors)")
    epochs: int | None = option(20, "passes over every training caption when --max-steps is 0")
    batch_size: int | None = option(256, "captions per optimizer step per process, before accumulation")
    lr: float | None = option(5e-4, "peak learning rate of AdamW")
    weight_decay: float = option(0.0, "AdamW decoupled weight decay")
    max_grad_norm: float = option(0.0, "clip the gradients' global L2 norm to this (0: no clipping)")
    num_agreement_images: int = option(500, "training images, spread over the split, on which the agreement between "
                                            "languages is measured before and after (0: all)")
    checkpoint_every: int = option(100, "write resumable training state every N optimizer steps (0: only at the end)")
    validate_every: int = option(0, "measure agreement and retrieval every N optimizer steps (0: only at the end)")


def _per_stage(name: str) -> str:
    """"train-clip 30, align-text 20, train-vae 5, train-unet 20": each stage's default of `name` when `train` runs
    it (align-text has no preset rows: its own defaults)."""
    stages = (("train-clip", ClipTrainConfig, CLIP_PRESETS), ("align-text", AlignTextConfig, None),
              ("train-vae", VaeTrainConfig, VAE_PRESETS), ("train-unet", UnetTrainConfig, UNET_PRESETS))
    def default(cls, table) -> float:
        recipe = table["tiny"].scratch if table else None
        return getattr(recipe, name) if hasattr(recipe, name) else cls.__dataclass_fields__[name].default

    return ", ".join(f"{stage} {default(cls, table):g}" for stage, cls, table in stages)


@dataclass
class TrainAllConfig:
    """`latentdiff train`: train-clip, align-text (captions in several languages only), train-vae and train-unet in
    order into OUT/clip, OUT/clip-aligned, OUT/vae and OUT/pipeline. Options left unset (None / 0) take each
    stage's own default."""

    data: str = option("", "the prepared dataset folder (from `latentdiff prepare-data`)")
    out: str = option("", "the run folder (clip/, vae/, pipeline/ inside); rerunning with the same --out resumes")
    preset: str = option("tiny", "model size of all three models", choices=PRESET_NAMES)
    seed: int = option(0, "seed of every stage (a run is reproducible)")
    max_steps: int = option(0, "optimizer steps of each stage (0: each stage's default epochs)")
    clip_max_steps: int = option(0, "optimizer steps of train-clip (0: --max-steps)")
    vae_max_steps: int = option(0, "optimizer steps of train-vae (0: --max-steps)")
    unet_max_steps: int = option(0, "optimizer steps of train-unet (0: --max-steps)")
    align_text: bool = option(True, "when the training captions are in several languages, run align-text on the CLIP "
                                    "before the U-Net trains on it (RUN/clip-aligned): one image's captions in every "
                                    "language then give the U-Net nearly the same condition")
    align_max_steps: int = option(0, "optimizer steps of align-text (0: --max-steps)")
    epochs: int | None = option(None, "passes over the training split of each stage when its max steps are 0 "
                                      f"(default: each stage's own: {_per_stage('epochs')})")
    batch_size: int | None = option(None, f"images (align-text: captions) per optimizer step of each stage (default: each stage's own: "
                                          f"{_per_stage('batch_size')})")
    checkpoint_every: int | None = option(None, "training-state checkpoint every N steps in each stage "
                                                f"(default: each stage's own: {_per_stage('checkpoint_every')})")
    validate_every: int | None = option(None, "validation every N steps in each stage "
                                              f"(default: each stage's own: {_per_stage('validate_every')})")
    mixed_precision: str = option("auto", "accelerate mixed precision (auto: bf16 on CUDA cards that support it, else fp32)",
                                  choices=("auto", "no", "fp16", "bf16"))
    num_workers: int = option(0, "DataLoader worker processes (0: load in the training process)")
    grad_accum_steps: int = option(1, "micro-batches accumulated per optimizer step in every stage")
    gradient_checkpointing: bool = option(False, "gradient checkpointing in every stage (less GPU memory, about a third more compute)")
    compile: bool = option(False, "torch.compile the trained model of every stage")


@dataclass
class GenerateConfig:
    """`latentdiff generate PROMPT...`: images from a pipeline folder, one PNG per image."""

    prompts: list[str] = positional("one or more prompts (quote each one)", default=[], nargs="*")
    model: str | None = option(None, MODEL_HELP)
    negative_prompt: str = option("", "what the images should not show")
    num_images: int = option(1, "images per prompt")
    seed: int | None = option(None, "seed of the first image; image i uses seed+i (default: random, printed)")
    steps: int = option(DEFAULT_GENERATION_STEPS, "denoising steps")
    guidance: float | None = option(None, GUIDANCE_HELP)
    scheduler: str = option(DEFAULT_SCHEDULER, f"sampler: {', '.join(SCHEDULER_NAMES)}")
    width: int | None = option(None, "image width in pixels (default: the model's training size)")
    height: int | None = option(None, "image height in pixels (default: the model's training size)")
    init_image: str | None = option(None, "img2img: start from this picture (PNG, JPEG...; resized to the "
                                          "output size) instead of pure noise")
    strength: float = option(0.75, "img2img: how far --init-image is noised, above 0 (close to it) to 1 "
                                   "(ignore its content); runs int(steps x strength) steps")
    out: str = option("outputs", "folder for the PNGs (created if needed)")
    batch_size: int | None = option(None, "images denoised at once (default: as many as fit in memory)")
    device: str | None = option(None, "cpu, cuda, cuda:1, mps (default: the best available)")
    backend: str | None = option(None, BACKEND_HELP, choices=BACKENDS)
    threads: int | None = option(None, THREADS_HELP)
    keep_alive: float | None = option(None, "seconds a background worker keeps the model loaded after this call, "
                                            "so the next generate skips loading it (0: no worker; default: "
                                            "$LATENTDIFF_KEEP_ALIVE if set, else 300)",
                                     allow_inf=True)  # inf: as long as allowed (24 h)


@dataclass
class ExportConfig:
    """`latentdiff export [MODEL] --format onnx|openvino --out DIR`: a pipeline's text encoder, U-Net and VAE
    for ONNX Runtime or OpenVINO, in optimum's StableDiffusion layout (latentdiff.export.layout)."""

    model: str | None = positional(MODEL_HELP,
                                   default=None, nargs="?")
    format: str = option("onnx", "onnx (ONNX Runtime) or openvino (OpenVINO IR)", choices=("onnx", "openvino"))
    out: str = option("", "folder for the export (new, empty, or an earlier export, which is replaced)")
    weights: str = option("fp32", "stored weight precision: fp32, or fp16 (half the size, pixels within a few /255)",
                          choices=EXPORT_WEIGHTS)
    skip_check: bool = option(False, "do not compare one image from the export with PyTorch's after exporting")


@dataclass
class ExportCheckpointConfig:
    """`latentdiff export-checkpoint RUN --out DIR [--step N]`: a pipeline folder from a train-unet run's saved
    training state, while the run goes on or after it stopped (what the run would export at the end)."""

    run: str = positional("the --out folder of a train-unet run (it holds training_state/step-N checkpoints)")
    out: str = option("", "folder for the pipeline (new or empty)")
    step: int = option(0, "the checkpoint's step (0: the latest)")
    weights: str = option("ema", "ema: the averaged weights the run exports (the raw ones when it keeps no EMA); "
                                 "raw: the weights the optimizer is at", choices=("ema", "raw"))
    allow_pickle: bool = option(False, "allow the run's --init, CLIP or VAE from pickled .bin/.pt weights, as the run "
                                       "itself was allowed (not recorded in its checkpoint)")


@dataclass
class EvaluateConfig:
    """`latentdiff evaluate --model M --data DIR`: metrics.json + report.md for a pipeline, CLIP or VAE
    folder on one split of a prepared dataset. What the folder is decides what is measured."""

    model: str = option("", "a pipeline folder (or hub id), a CLIP folder or a VAE folder")
    data: str = option("", "the prepared dataset folder (from `latentdiff prepare-data`)")
    split: str = option("test", "the split measured on", choices=("train", "validation", "test"))
    num_samples: int = option(0, "images of the split used, in file order, one generated per caption (0: all)")
    steps: int = option(DEFAULT_GENERATION_STEPS, "denoising steps")
    guidance: float | None = option(None, GUIDANCE_HELP)
    scheduler: str = option(DEFAULT_SCHEDULER, f"sampler: {', '.join(SCHEDULER_NAMES)}")
    seed: int = option(0, "seed of the first generated image; image i uses seed+i")
    guidance_sweep: list[float] = option([], "also measure fidelity and CLIP score at these guidance scales (e.g. 1,3,5,7)")
    clip: str | None = option(None, "the CLIP folder the pipeline was trained with, for CLIP score and retrieval "
                                    "(default: a `clip` folder beside or inside the pipeline, if there is one)")
    inception_weights: str | None = option(None, "a local InceptionV3 FID weights file: also report standard FID (needs torch-fidelity)")
    out: str = option("evaluation", "folder for metrics.json, report.md, images and plots")
    batch_size: int = option(8, "images generated at once (fixed, so numbers do not depend on free memory)")
    device: str | None = option(None, "cpu, cuda, cuda:1, mps (default: the best available)")
    backend: str | None = option(None, BACKEND_HELP, choices=BACKENDS)
    threads: int | None = option(None, THREADS_HELP)


@dataclass
class ServeConfig:
    """`latentdiff serve`: the web page, the AUTOMATIC1111- and OpenAI-compatible APIs over one queue."""

    model: str | None = option(None, MODEL_HELP)
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
    backend: str | None = option(None, BACKEND_HELP, choices=BACKENDS)
    threads: int | None = option(None, THREADS_HELP)


@dataclass
class PsConfig:
    """`latentdiff ps`: the keep-alive workers and servers running for this user (as `ollama ps`)."""


@dataclass
class StopConfig:
    """`latentdiff stop [TARGET...]`: end keep-alive workers and servers (as `ollama stop`)."""

    targets: list[str] = positional("which to stop: a PID, or a model name or folder as `latentdiff ps` shows it "
                                    "(none: all of them)", default=[], nargs="*")
