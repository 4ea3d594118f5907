"""`latentdiff train-unet --data DIR --clip DIR --vae DIR --out DIR`: train the latent denoiser, conditioned on a
frozen CLIP text encoder, in the latent space of a frozen VAE; the output folder is a complete
`StableDiffusionPipeline` (plus `training_state/` and `logs/`), so `StableDiffusionPipeline.from_pretrained(out)`
loads it. Rerunning the same command with the same --out resumes.

Everything a user can get wrong (missing folders, a CLIP or VAE that does not fit an --init U-Net, an image
size the VAE cannot encode) is checked before any encoding or training starts.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

from latentdiff.config import UnetTrainConfig
from latentdiff.options import CONFIG_FILENAME, run_stage
from latentdiff.data.prepared import open_prepared
from latentdiff.errors import UserError
from latentdiff.presets import UNET_PRESETS, UnetPreset, lookup_preset
from latentdiff.training.runner import require_data_and_out, run_training_stage

log = logging.getLogger(__name__)

# transformers, diffusers and the training code: imported inside the functions that use them, so `--help` and a wrong option
# are answered before their ~9 s of imports (the CLI imports this module only to run it).

PIPELINE_TEXT_ENCODER_SUBFOLDER = "text_encoder"
PIPELINE_TOKENIZER_SUBFOLDER = "tokenizer"


def _require_folder(value: str, flag: str, made_by: str) -> Path:
    if not value:
        raise UserError(f"Say which {flag[2:].upper()} to use with {flag} DIR (a folder written by `{made_by}`).")
    path = Path(value).expanduser()
    if not path.is_dir():
        raise UserError(f"{flag} {value} does not exist or is not a folder; pass the folder written by `{made_by}`.")
    return path


def load_text_encoder(clip_dir: Path, allow_pickle: bool = False):
    """(CLIPTextModel, tokenizer) from a CLIP folder (train-clip's output: a CLIPModel) or from a pipeline
    folder (text_encoder/ + tokenizer/, e.g. to fine-tune with a Stable Diffusion text encoder)."""
    from transformers import CLIPTextModel, CLIPTokenizer

    if (clip_dir / PIPELINE_TEXT_ENCODER_SUBFOLDER / "config.json").is_file():
        try:
            text_encoder = CLIPTextModel.from_pretrained(clip_dir, subfolder=PIPELINE_TEXT_ENCODER_SUBFOLDER,
                                                         use_safetensors=None if allow_pickle else True)
            tokenizer = CLIPTokenizer.from_pretrained(clip_dir, subfolder=PIPELINE_TOKENIZER_SUBFOLDER)
        except (OSError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"Could not load the text encoder and tokenizer of the pipeline folder {clip_dir} ({first}); "
                            f"pass --clip a folder written by `latentdiff train-clip` or a complete pipeline folder.") from None
        return text_encoder, tokenizer
    from latentdiff.models.clip import load_clip, text_tower

    clip, tokenizer, _ = load_clip(str(clip_dir), allow_pickle=allow_pickle)
    # The pipeline only needs the text tower: copy it out of the CLIPModel into a CLIPTextModel, the class
    # StableDiffusionPipeline's text_encoder is.
    text_encoder = CLIPTextModel(clip.config.text_config)
    text_tower(text_encoder).load_state_dict(clip.text_model.state_dict())
    return text_encoder, tokenizer


def skip_last_layers(text_encoder, num_skipped: int, clip_dir: Path) -> None:
    """Drop the last `num_skipped` transformer layers of a CLIPTextModel in place. Its output is then the hidden
    state diffusers' `encode_prompt(..., clip_skip=num_skipped)` takes from the whole encoder (the final layer
    norm still applies), so the saved pipeline needs no clip_skip argument to draw what it was trained on.
    Why: a small CLIP trained contrastively on `shapes` makes "on the left" and "on the right" nearly the same
    after its first layer (docs/speedrun/shapes.md), and a U-Net cannot follow words it does not receive."""
    from latentdiff.models.clip import text_tower

    encoder = text_tower(text_encoder).encoder
    num_layers = len(encoder.layers)
    if num_skipped > num_layers:
        raise UserError(f"--clip-skip {num_skipped} is more than the {num_layers} layers of the text encoder in "
                        f"{clip_dir}; pass at most {num_layers} ({num_layers} conditions on the token embeddings alone).")
    encoder.layers = encoder.layers[:num_layers - num_skipped]
    text_encoder.config.num_hidden_layers = num_layers - num_skipped


def check_options(cfg: UnetTrainConfig) -> tuple[Path, Path]:
    """The checks that need no model (and no torch): (the --clip folder, the --vae folder)."""
    clip_dir = _require_folder(cfg.clip, "--clip", "latentdiff train-clip")
    vae_dir = _require_folder(cfg.vae, "--vae", "latentdiff train-vae")
    for name, value in (("--snr-gamma", cfg.snr_gamma), ("--noise-offset", cfg.noise_offset),
                        ("--input-perturbation", cfg.input_perturbation)):
        if value < 0:
            raise UserError(f"{name} must be 0 (off) or positive (got {value}).")
    if cfg.zero_terminal_snr and cfg.prediction_type != "v_prediction":
        raise UserError("--zero-terminal-snr needs --prediction-type v_prediction: at pure noise the noise itself is "
                        "known, so only a v (or x0) target carries information.")
    if cfg.logit_std <= 0:
        raise UserError(f"--logit-std must be positive (got {cfg.logit_std}); 1.0 is SD3's choice.")
    if cfg.clip_skip < 0:
        raise UserError(f"--clip-skip must be 0 (all layers) or a positive number of last layers to skip (got {cfg.clip_skip}).")
    if not 0 <= cfg.caption_dropout < 1:
        raise UserError(f"--caption-dropout must be in [0, 1) (got {cfg.caption_dropout}); 0.1 is the usual choice.")
    check_unet_size(cfg)
    return clip_dir, vae_dir


def check_unet_size(cfg: UnetTrainConfig) -> None:
    """--block-out-channels, --layers-per-block and --cross-attention-levels shape a new U-Net; an --init one
    keeps its own. --transformer-layers-per-block shapes a new one or deepens an --init one."""
    check_new_unet_shape(cfg)
    if cfg.transformer_layers_per_block and not cfg.init:  # an --init U-Net's levels are checked when it is loaded
        from latentdiff.models.unet import attention_levels, transformer_depth

        transformer_depth(cfg.transformer_layers_per_block,
                          attention_levels=attention_levels(unet_preset(cfg).cross_attention_levels))


def check_new_unet_shape(cfg: UnetTrainConfig) -> None:
    if not (cfg.block_out_channels or cfg.layers_per_block or cfg.cross_attention_levels):
        return
    if cfg.init:
        raise UserError("--block-out-channels, --layers-per-block and --cross-attention-levels shape a new U-Net, so "
                        "drop them or --init (whose U-Net keeps its own shape).")
    if cfg.layers_per_block < 0:
        raise UserError(f"--layers-per-block must be 0 (the preset's) or positive (got {cfg.layers_per_block}).")
    preset = lookup_preset(UNET_PRESETS, cfg.preset, "U-Net")
    if cfg.cross_attention_levels:
        levels = len(preset.cross_attention_levels)
        if len(cfg.cross_attention_levels) != levels or any(v not in (0, 1) for v in cfg.cross_attention_levels):
            raise UserError(f"--cross-attention-levels needs {levels} values of 1 (attend to the text) or 0 (plain "
                            f"ResNet blocks), one per level of the {cfg.preset} preset from the finest resolution "
                            f"down, such as {','.join(str(int(a)) for a in preset.cross_attention_levels)}; got "
                            f"{','.join(map(str, cfg.cross_attention_levels))}.")
    if cfg.block_out_channels:
        levels, unit = len(preset.block_out_channels), math.lcm(preset.attention_head_dim, preset.norm_num_groups)
        if len(cfg.block_out_channels) != levels or any(w <= 0 or w % unit for w in cfg.block_out_channels):
            raise UserError(f"--block-out-channels needs {levels} widths, one per level of the {cfg.preset} preset, each a "
                            f"multiple of {unit} (its head size and norm groups), such as "
                            f"{','.join(str(2 * w) for w in preset.block_out_channels)}; got "
                            f"{','.join(map(str, cfg.block_out_channels))}.")


def unet_preset(cfg: UnetTrainConfig) -> UnetPreset:
    """The --preset row with the --block-out-channels, --layers-per-block and --cross-attention-levels given."""
    preset = lookup_preset(UNET_PRESETS, cfg.preset, "U-Net")
    if cfg.block_out_channels:
        preset = dataclasses.replace(preset, block_out_channels=tuple(cfg.block_out_channels))
    if cfg.layers_per_block:
        preset = dataclasses.replace(preset, layers_per_block=cfg.layers_per_block)
    if cfg.cross_attention_levels:
        preset = dataclasses.replace(preset, cross_attention_levels=tuple(bool(v) for v in cfg.cross_attention_levels))
    return preset


def warn_if_conditioning_changes(cfg: UnetTrainConfig, num_layers: int) -> None:
    """An --init pipeline whose U-Net learnt on other conditioning than this run gives it: its text encoder has
    another number of layers (right when switching on --clip-skip, a slip when continuing a --clip-skip run with
    its full CLIP), or it trained its text encoder and --clip is another folder. The U-Net would quietly start
    over on what it is told, so say so."""
    import json

    if Path(cfg.clip).resolve() != Path(cfg.init).resolve() and trained_its_text_encoder(Path(cfg.init)):
        log.warning("--init %s trained its text encoder with its U-Net (--train-text-encoder); this run conditions "
                    "the U-Net on the text encoder of --clip %s instead. To continue it as it was trained, pass "
                    "--clip %s.", cfg.init, cfg.clip, cfg.init)
    try:
        init_config = json.loads((Path(cfg.init) / "text_encoder" / "config.json").read_text())
        init_layers = int(init_config["num_hidden_layers"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # a bare U-Net folder or a hub id: nothing to compare with
    if init_layers != num_layers:
        log.warning("--init %s conditioned its U-Net on %d text-encoder layers; this run conditions it on %d "
                    "(--clip %s, --clip-skip %d). To continue it as it was trained, pass --clip %s.",
                    cfg.init, init_layers, num_layers, cfg.clip, cfg.clip_skip, cfg.init)


def trained_its_text_encoder(pipeline_dir: Path) -> bool:
    """Whether the train-unet run that wrote `pipeline_dir` trained the text encoder (its saved config says so)."""
    import json

    try:
        return bool(json.loads((pipeline_dir / CONFIG_FILENAME).read_text())["config"].get("train_text_encoder"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def build_components(cfg: UnetTrainConfig):
    """Load and check everything (no training, no encoding): (dataset, unet, vae, text_encoder, tokenizer)."""
    require_data_and_out(cfg, "the pipeline")
    dataset = open_prepared(cfg.data)
    dataset.require_split("train")
    clip_dir, vae_dir = check_options(cfg)
    from latentdiff.models.unet import check_unet_fits, deepen_attention, load_unet, unet_from_preset
    from latentdiff.models.vae import check_image_size, downsampling_factor, load_vae
    from latentdiff.runtime import seed_everything

    text_encoder, tokenizer = load_text_encoder(clip_dir, cfg.allow_pickle)
    if cfg.clip_skip:
        skip_last_layers(text_encoder, cfg.clip_skip, clip_dir)
    vae = load_vae(str(vae_dir), allow_pickle=cfg.allow_pickle)
    check_image_size(vae, dataset.image_size, cfg.data)
    text_width, latent_channels = text_encoder.config.hidden_size, vae.config.latent_channels
    if cfg.init:
        warn_if_conditioning_changes(cfg, text_encoder.config.num_hidden_layers)
        unet = load_unet(cfg.init, allow_pickle=cfg.allow_pickle)
        check_unet_fits(unet, text_width=text_width, latent_channels=latent_channels, clip_dir=str(clip_dir),
                        vae_dir=str(vae_dir), init=cfg.init)
        if cfg.transformer_layers_per_block:
            unet = deepen_attention(unet, cfg.transformer_layers_per_block, seed=cfg.seed)
    else:
        preset = unet_preset(cfg)
        seed_everything(cfg.seed)  # the same --seed gives the same initial weights
        unet = unet_from_preset(preset, latent_channels=latent_channels,
                                sample_size=dataset.image_size // downsampling_factor(vae),
                                cross_attention_dim=text_width, text_time_embedding=cfg.text_time_embedding,
                                transformer_layers_per_block=tuple(cfg.transformer_layers_per_block))
    return dataset, unet, vae, text_encoder, tokenizer


def build_task(cfg: UnetTrainConfig):
    from latentdiff.training.diffusion_task import DiffusionTask

    return DiffusionTask(cfg, *build_components(cfg))


def run(cfg: UnetTrainConfig):
    result = run_training_stage(cfg, command="train-unet", artefact="pipeline", presets=UNET_PRESETS,
                                build_task=build_task, check=check_options)
    from latentdiff.runtime import process_state

    out = cfg.out
    if result is not None and result.finished and process_state().is_main_process:
        print(f"pipeline written to {out} (step {result.step}, last loss {result.last_loss:.4f}); {load_hint(out)}")
    return result


def load_hint(pipeline_dir) -> str:
    return (f"load it with StableDiffusionPipeline.from_pretrained('{pipeline_dir}') or "
            f"`latentdiff generate --model {pipeline_dir} PROMPT`")


def main(argv: list[str] | None = None) -> int:
    return run_stage(run, UnetTrainConfig, argv, "latentdiff train-unet",
                     "Train the latent-diffusion U-Net on a prepared dataset, conditioned on a trained CLIP text "
                     "encoder, in a trained VAE's latent space; writes a StableDiffusionPipeline folder.")
