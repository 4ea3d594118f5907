"""Building a transformers `CLIPModel` (text + vision towers) from a preset, or loading a pretrained one
(a local folder or a hub id) together with its tokenizer and image processor."""

from __future__ import annotations

from pathlib import Path

from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

try:  # transformers 5: the PIL backend by its own name. Naming CLIPImageProcessor without torchvision warns
    # "install torchvision", which cannot be installed beside the CPU torch wheel; the PIL backend is what that
    # name falls back to anyway, and is saved as a plain CLIPImageProcessor.
    from transformers import CLIPImageProcessorPil as CLIPImageProcessor
except ImportError:  # transformers 4
    from transformers import CLIPImageProcessor

from latentdiff.errors import UserError
from latentdiff.presets import ClipPreset
from latentdiff.models.weights import no_loading_bars, refuse_pickle_only

# OpenAI CLIP's pixel statistics: kept for models trained from scratch too, so every CLIP folder we
# write normalises images the way the whole CLIP ecosystem expects.
CLIP_IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)
MLP_RATIO = 4  # transformer MLP width / model width, as in CLIP and ViT


def make_image_processor(image_size: int):
    """A `CLIPImageProcessor` that resizes the short side to `image_size`, center-crops a square and
    normalises with CLIP's mean/std: the one transform used in training, validation and at inference."""
    return CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
                              image_mean=list(CLIP_IMAGE_MEAN), image_std=list(CLIP_IMAGE_STD), do_center_crop=True)


def build_clip(preset: ClipPreset, tokenizer):
    """A randomly initialised CLIPModel sized by `preset`, its text side matched to `tokenizer`."""
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": preset.text_width,
        "intermediate_size": MLP_RATIO * preset.text_width,
        "num_hidden_layers": preset.text_layers,
        "num_attention_heads": preset.text_heads,
        "max_position_embeddings": preset.max_text_tokens,
        # The text tower pools the hidden state at the first <|endoftext|>; these ids must be the tokenizer's.
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "projection_dim": preset.projection_dim,
    }
    vision_config = {
        "hidden_size": preset.vision_width,
        "intermediate_size": MLP_RATIO * preset.vision_width,
        "num_hidden_layers": preset.vision_layers,
        "num_attention_heads": preset.vision_heads,
        "image_size": preset.image_size,
        "patch_size": preset.patch_size,
        "projection_dim": preset.projection_dim,
    }
    if preset.image_size % preset.patch_size:
        raise UserError(f"CLIP image size {preset.image_size} is not a multiple of the patch size {preset.patch_size}.")
    config = CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=preset.projection_dim)
    return CLIPModel(config)


# A CLIP tokenizer on disk: the fast tokenizer's one file, or the slow one's vocabulary and merges.
TOKENIZER_FILE_SETS = (("tokenizer.json",), ("vocab.json", "merges.txt"))


def text_tower(text_encoder):
    """The transformer inside a CLIPTextModel (embeddings, encoder layers, final layer norm): transformers 4
    wraps it in `.text_model`, transformers 5 is it."""
    return getattr(text_encoder, "text_model", text_encoder)


def has_tokenizer_files(folder: Path) -> bool:
    return any(all((folder / name).is_file() for name in names) for names in TOKENIZER_FILE_SETS)


def load_clip(init: str, allow_pickle: bool = False):
    """(CLIPModel, tokenizer, image processor) from a local folder or a hub id. Safetensors only unless
    `allow_pickle`."""
    folder = Path(init).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--init {init} is a file; give the folder that holds config.json and the weights.")
    if folder.is_dir() and not (folder / "config.json").is_file():
        raise UserError(f"--init {init} is not a CLIP model folder (no config.json); give a folder written by "
                        f"`latentdiff train-clip` or `CLIPModel.save_pretrained`.")
    refuse_pickle_only(folder, allow_pickle)
    if folder.is_dir() and not has_tokenizer_files(folder):
        # `CLIPModel.save_pretrained` alone (e.g. with safe_serialization=False) writes no tokenizer; loading
        # one from such a folder either crashes (TypeError in transformers 4) or silently gives a 2-token
        # vocabulary that maps every caption to <unk> (transformers 5).
        raise UserError(f"--init {init} has no tokenizer ({' or '.join(' + '.join(f) for f in TOKENIZER_FILE_SETS)}); "
                        f"save the tokenizer there too (`tokenizer.save_pretrained('{init}')`) or give a folder "
                        f"written by `latentdiff train-clip`.")
    source = str(folder) if folder.is_dir() else init
    try:
        with no_loading_bars():  # a per-tensor bar for a model that loads in a second; a load report still prints
            model = CLIPModel.from_pretrained(source, use_safetensors=None if allow_pickle else True)
        tokenizer = CLIPTokenizer.from_pretrained(source)
    except (OSError, ValueError, TypeError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"Could not load a CLIP model with its tokenizer from '{init}' ({first_line}); give a local "
                        f"CLIP folder or a hub id you have access to.") from None
    try:
        processor = CLIPImageProcessor.from_pretrained(source)
    except OSError:  # some checkpoints ship without preprocessor_config.json: use CLIP's standard transform
        processor = make_image_processor(model.config.vision_config.image_size)
    return model, tokenizer, processor
