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
import math
import sys
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Any, Callable, TypeVar

from latentdiff.config_file import CONFIG_FLAG, config_path, config_tokens, read_config_values
from latentdiff.errors import UserError

CONFIG_FILENAME = "latentdiff_config.json"

T = TypeVar("T")


def option(default: Any, help: str, *, choices: typing.Sequence[str] | None = None, short: str | None = None,
           allow_inf: bool = False):
    """A `--flag` option. Lists are given comma-separated on the command line (`--languages en,fr`).
    Float options refuse nan, and inf unless `allow_inf` (where "infinitely" means something)."""
    meta = {"help": help, "choices": choices, "short": short, "allow_inf": allow_inf}
    if isinstance(default, (list, dict, tuple)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def hidden_option(default: Any):
    """An inherited flag a stage has no use for: left out of its --help; the stage refuses it when given."""
    return field(default=default, metadata={"help": argparse.SUPPRESS, "hidden": True})


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


def _number(allow_inf: bool) -> Callable[[str], float]:
    """argparse `type` for a float option: nan (and inf, unless allowed) is refused with the flag's name,
    before any work, instead of training on or generating from a number that means nothing."""

    def parse(text: str) -> float:
        value = float(text)  # a ValueError here is argparse's "invalid float value"
        if math.isnan(value) or (math.isinf(value) and not allow_inf):
            raise argparse.ArgumentTypeError(f"must be a finite number, got '{text}'")
        return value

    parse.__name__ = "float"  # argparse names the type in its messages
    return parse


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors can name where the bad value came from (a --config file)."""

    source: str | None = None

    def error(self, message: str):
        super().error(f"{self.source}: {message}" if self.source else message)


def build_parser(cls: type, prog: str, description: str) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description=description, formatter_class=_HelpFormatter)
    fields = dataclasses.fields(cls)
    if fields and not any(f.metadata.get("positional") for f in fields):  # a file cannot say where positionals go
        parser.add_argument(CONFIG_FLAG, metavar="FILE", default=None,
                            help="read options from a TOML or JSON file, e.g. a saved latentdiff_config.json "
                                 "(flags given here override it)")
    hints = typing.get_type_hints(cls)
    for f in fields:
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
            item = _number(meta.get("allow_inf", False)) if item is float else item
            kwargs["type"] = lambda s, item=item: [item(x.strip()) for x in s.split(",") if x.strip()]
            kwargs["metavar"] = "A,B,..."
        else:
            kwargs["type"] = _number(meta.get("allow_inf", False)) if tp is float else tp
        parser.add_argument(*names, **kwargs)
    return parser


def out_path_problem(out: str) -> str | None:
    """Why `--out` cannot be the folder a stage writes (it, or a folder above it, is a file); None if it can."""
    path = Path(out).expanduser()
    for candidate in (path, *path.parents):
        if candidate.exists():
            if candidate.is_dir():
                return None
            where = "is a file" if candidate == path else f"is inside {candidate}, which is a file"
            return f"--out {out} {where}; pass a folder (it is created if needed)"
    return None


def parse_config(cls: type[T], argv: list[str], prog: str, description: str) -> T:
    """Flags -> `cls`; a value no stage can use (nan, `--out` at a file) exits 2 with argparse's one line,
    before the stage imports torch or loads anything."""
    parser = build_parser(cls, prog, description)
    path = config_path(argv) if any(a.dest == "config" for a in parser._actions) else None
    if path:
        parser.source = f"--config {path}"
        try:
            tokens, lists = config_tokens(read_config_values(path, cls.__name__), parser)
        except (ValueError, argparse.ArgumentTypeError) as err:
            parser.error(str(err))
        parser.set_defaults(**lists)
        parser.parse_args(tokens)  # the file's values alone, so an error in them names the file
        parser.source = None
        argv = tokens + argv  # argparse keeps the last value given: the command line's flags win
    namespace = parser.parse_args(argv)
    vars(namespace).pop("config", None)
    problem = out_path_problem(namespace.out) if getattr(namespace, "out", "") else None
    if problem:
        parser.error(problem)
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
    except KeyboardInterrupt as err:  # Ctrl-C; a training stage's says where it saved the state
        print(f"{prog}: {str(err) or 'interrupted.'}", file=sys.stderr)
        return 130
    return 0
