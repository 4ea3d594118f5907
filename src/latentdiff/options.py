"""Stage options as dataclasses: the fields declare each flag once, `parse_config` builds the argparse
parser from them, `save_config` writes the resolved config next to a stage's output, and `run_stage` is
the body of every stage's `main(argv)`.

Flag spellings (`--out`, `--data`, `--seed`, `--max-steps`, ...) are the field names with `_` -> `-`, so
they stay consistent across stages.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from dataclasses import field
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


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows `(default: X)` unless the help already says what the default is, or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if "default" in (action.help or "") or action.default in (None, "", argparse.SUPPRESS):
            return action.help or ""
        return super()._get_help_string(action)


def build_parser(cls: type, prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=_HelpFormatter)
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
    """The body of every stage's `main(argv)`: parse flags into `cls` and `run_reporting_errors`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_reporting_errors(run, parse_config(cls, argv, prog, description), prog)


def run_reporting_errors(run: Callable[[T], Any], cfg: T, prog: str) -> int:
    """Call `run(cfg)` and return the exit status, turning a `UserError` into one line on stderr and
    status 2 (never a traceback for a user's mistake) and Ctrl-C into status 130."""
    try:
        run(cfg)
    except UserError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted.", file=sys.stderr)
        return 130
    return 0
