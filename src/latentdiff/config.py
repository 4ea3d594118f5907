"""Typed configuration: one dataclass per stage, the model-size presets table, and the plumbing that
turns a dataclass into command-line flags and saves the resolved config next to every output.

A stage declares its options once, as dataclass fields made with `option(...)`/`positional(...)`;
`parse_config` builds the argparse parser from them, so flag spellings (`--out`, `--data`, `--seed`,
`--max-steps`, ...) are the field names with `_` -> `-` and stay consistent across stages.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

from latentdiff.errors import UserError

CONFIG_FILENAME = "latentdiff_config.json"

T = TypeVar("T")


def option(default: Any, help: str, *, choices: typing.Sequence[str] | None = None, short: str | None = None):
    """A `--flag` option. Lists are given comma-separated on the command line (`--languages en,fr`)."""
    meta = {"help": help, "choices": choices, "short": short}
    if isinstance(default, (list, dict, tuple)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def positional(help: str, *, default: Any = dataclasses.MISSING, nargs: str | None = None):
    """A positional argument; `nargs='?'` makes it optional, `'+'`/`'*'` makes it a list."""
    meta = {"help": help, "positional": True, "nargs": nargs}
    if default is dataclasses.MISSING:
        return field(metadata=meta)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


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


CLIP_PRESETS: dict[str, ClipPreset] = {
    "tiny": ClipPreset(64, 32, 2, 2, 32, 2, 2, 16, 32, 1000, 32),
    "small": ClipPreset(64, 256, 4, 4, 256, 4, 4, 8, 256, 8192, 77),
    "base": ClipPreset(224, 512, 12, 8, 768, 12, 12, 32, 512, 49408, 77),
}

VAE_PRESETS: dict[str, VaePreset] = {
    "tiny": VaePreset(64, (16, 32), 1, 4),
    "small": VaePreset(64, (64, 128, 128), 1, 4),
    "base": VaePreset(256, (128, 256, 512, 512), 2, 4),
}

UNET_PRESETS: dict[str, UnetPreset] = {
    "tiny": UnetPreset((32, 64), 1, 8, (False, True)),
    "small": UnetPreset((128, 256, 256), 2, 32, (False, True, True)),
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


# ----------------------------------------------------------------------------------------------
# Plumbing: dataclass <-> argparse, saving.
# ----------------------------------------------------------------------------------------------


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def build_parser(cls: type, prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        tp = _unwrap_optional(hints[f.name])
        kwargs: dict[str, Any] = {"help": meta.get("help", "")}
        if meta.get("positional"):
            if meta.get("nargs"):
                kwargs["nargs"] = meta["nargs"]
            if f.default is not dataclasses.MISSING:
                kwargs["default"] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                kwargs["default"] = f.default_factory()
            parser.add_argument(f.name, **kwargs)
            continue
        names = ["--" + f.name.replace("_", "-")]
        if meta.get("short"):
            names.insert(0, meta["short"])
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        kwargs["default"] = default
        if meta.get("choices"):
            kwargs["choices"] = list(meta["choices"])
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) in (list, tuple):
            item = typing.get_args(tp)[0] if typing.get_args(tp) else str
            kwargs["type"] = lambda s, item=item: [item(x.strip()) for x in s.split(",") if x.strip()]
            kwargs["metavar"] = "A,B,..."
        else:
            kwargs["type"] = tp
        parser.add_argument(*names, **kwargs)
    return parser


def parse_config(cls: type[T], argv: list[str], prog: str, description: str) -> T:
    namespace = build_parser(cls, prog, description).parse_args(argv)
    return cls(**vars(namespace))


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def save_config(cfg: Any, out_dir: str | Path, filename: str = CONFIG_FILENAME) -> Path:
    """Write the resolved config as JSON next to a stage's output (`out_dir/latentdiff_config.json`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"stage": type(cfg).__name__, "config": config_to_dict(cfg)}
    path = out_dir / filename
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def run_stage(run: Callable[[T], Any], cls: type[T], argv: list[str] | None, prog: str, description: str) -> int:
    """The body of every stage's `main(argv)`: parse flags into `cls`, call `run`, turn a `UserError`
    into one line on stderr and exit status 2 (never a traceback for a user's mistake)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = parse_config(cls, argv, prog, description)
    try:
        run(cfg)
    except UserError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted.", file=sys.stderr)
        return 130
    return 0
