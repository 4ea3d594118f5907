"""`--config FILE`: a command's options from a TOML or JSON file, the flags on the command line winning.

The file is a flat table of option names (`batch_size` or `batch-size`) to values, or the
`latentdiff_config.json` a stage saved next to its output (`{"stage": ..., "config": {...}}`), so
`latentdiff train-vae --config runs/a/vae/latentdiff_config.json --out runs/b/vae` reruns a run exactly.
Values become the same `--flag=value` tokens a user would type, placed before the command line's, so
argparse checks them (types, choices, nan) and a flag typed later overrides them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # the project supports 3.10, where TOML is read by tomli (the library tomllib was made from)
    import tomli as tomllib

CONFIG_FLAG = "--config"


def config_path(argv: list[str]) -> str | None:
    """The `--config FILE` of `argv`, or None (read before the real parse, which needs the file's values)."""
    finder = argparse.ArgumentParser(add_help=False)
    finder.add_argument(CONFIG_FLAG, default=None)
    return finder.parse_known_args(argv)[0].config


def read_config_values(path: str, stage: str) -> dict[str, Any]:
    """Option name -> value from `path`. Raises ValueError with the reason (the caller names the file)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError("no such file; pass a .toml or .json file of options (e.g. a saved latentdiff_config.json)")
    text = file.read_text(encoding="utf-8")
    try:
        if file.suffix.lower() == ".json":
            values = json.loads(text)
        else:
            values = tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"not valid {'JSON' if file.suffix.lower() == '.json' else 'TOML'} ({err})") from None
    if not isinstance(values, dict):
        raise ValueError("the file must hold a table of option names and values")
    if set(values) == {"stage", "config"} and isinstance(values["config"], dict):  # a saved latentdiff_config.json
        if values["stage"] != stage:
            raise ValueError(f"it holds the options of {values['stage']}, not {stage}; pass it to the command "
                             "that saved it")
        values = values["config"]
    return {str(name).replace("-", "_"): value for name, value in values.items()}


def config_tokens(values: dict[str, Any], parser: argparse.ArgumentParser) -> tuple[list[str], dict[str, Any]]:
    """(`--flag=value` tokens, list values) for `values`. Lists are returned apart, to be set as the
    parser's defaults: a comma-joined token would split a validation prompt that holds a comma.
    Raises ValueError for a name the command does not have or a value of the wrong kind."""
    actions = {a.dest: a for a in parser._actions if a.option_strings and a.dest not in ("help", "config")}
    tokens: list[str] = []
    lists: dict[str, Any] = {}
    for name, value in values.items():
        action = actions.get(name)
        if action is None:
            raise ValueError(f"unknown option '{name}' (`--help` lists this command's options)")
        flag = "--" + name.replace("_", "-")
        if value is None:  # None is the option's "not set" (the stage's default)
            continue
        if isinstance(action, argparse.BooleanOptionalAction):
            if not isinstance(value, bool):
                raise ValueError(f"'{name}' must be true or false, got {value!r}")
            tokens.append(flag if value else "--no-" + name.replace("_", "-"))
        elif isinstance(value, list):
            if action.metavar != "A,B,...":
                raise ValueError(f"'{name}' takes one value, got a list")
            # each item through the flag's own type (a float list refuses "x"); an item that splits on a
            # comma is a string option's value (a prompt) and stays whole
            parsed = [action.type(str(item)) for item in value]
            lists[name] = [p[0] if len(p) == 1 else item for p, item in zip(parsed, value)]
        elif isinstance(value, (dict, bool)):
            raise ValueError(f"'{name}' got {value!r}, which is not a value this option takes")
        else:
            tokens.append(f"{flag}={value}")
    return tokens, lists
