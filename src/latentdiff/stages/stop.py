"""`latentdiff stop [TARGET...]`: end keep-alive workers and servers (as `ollama stop`). A target is a PID
or a model as `latentdiff ps` shows it; no target stops them all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from latentdiff.config import StopConfig
from latentdiff.errors import UserError
from latentdiff.keep_alive import ask_to_stop
from latentdiff.options import run_stage
from latentdiff.processes import running, stop
from latentdiff.stages.ps import shown_model


def matches(card: dict[str, Any], target: str) -> bool:
    model = str(card.get("model", ""))
    folder = str(card.get("path", model))  # a server's card names its model and its folder apart
    if target == str(card.get("pid")) or target in (model, shown_model(model), Path(folder).name, folder):
        return True
    path = Path(target).expanduser()  # a folder given another way (relative, trailing slash)
    return path.exists() and str(path.resolve()) == folder


def run(cfg: StopConfig) -> int:
    cards = running()
    chosen = cards
    if cfg.targets:
        unknown = [t for t in cfg.targets if not any(matches(c, t) for c in cards)]
        if unknown:
            raise UserError(f"No running worker or server matches '{unknown[0]}'; `latentdiff ps` lists them "
                            f"(stop one by its PID or model).")
        chosen = [c for c in cards if any(matches(c, t) for t in cfg.targets)]
    if not chosen:
        print("No latentdiff workers or servers are running.")
        return 0
    for card in chosen:
        name = f"{card.get('kind', 'process')} {card['pid']} ({shown_model(str(card.get('model', '?')))})"
        if not stop(card, ask_worker=ask_to_stop):
            raise UserError(f"The {name} did not exit; end it with `kill {card['pid']}`.")
        print(f"stopped {name}")
    return len(chosen)


def main(argv: list[str] | None = None) -> int:
    return run_stage(run, StopConfig, argv, "latentdiff stop",
                     "Stop keep-alive workers and servers (all of them, or those given by PID or model, as "
                     "`latentdiff ps` shows them). A worker finishes the generate it is running first.")
