"""`latentdiff ps`: the keep-alive workers and servers running for this user, with their model and memory
(as `ollama ps`). The list comes from the cards in the private runtime folder (`latentdiff.processes`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from latentdiff.config import PsConfig
from latentdiff.options import run_stage
from latentdiff.processes import running

COLUMNS = ("PID", "KIND", "MODEL", "DEVICE", "MEMORY", "DETAILS")


def human_bytes(count: int | None) -> str:
    if count is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit in ("B", "KB") else f"{count:.1f} {unit}"
        count /= 1024
    return "?"


def details(card: dict[str, Any], now: float) -> str:
    """A server's URL; a worker's time left before it unloads the model (ollama's UNTIL)."""
    if card.get("url"):
        return card["url"]
    if card.get("until"):
        left_s = max(0, round(card["until"] - now))
        return f"unloads in {left_s // 60} min {left_s % 60} s" if left_s >= 60 else f"unloads in {left_s} s"
    return ""


def shown_model(model: str) -> str:
    """A folder as the user would type it from here (relative when it is below the current folder)."""
    try:
        return str(Path(model).relative_to(Path.cwd()))
    except ValueError:
        return model


def table(cards: list[dict[str, Any]]) -> str:
    now = time.time()
    rows = [COLUMNS] + [(str(c["pid"]), c.get("kind", "?"), shown_model(str(c.get("model", "?"))),
                         str(c.get("device", "auto")), human_bytes(c.get("memory_bytes")), details(c, now))
                        for c in cards]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def run(cfg: PsConfig) -> list[dict[str, Any]]:
    cards = running()
    print(table(cards) if cards else "No latentdiff workers or servers are running.")
    return cards


def main(argv: list[str] | None = None) -> int:
    return run_stage(run, PsConfig, argv, "latentdiff ps",
                     "List the keep-alive workers (left by `latentdiff generate`) and servers (`latentdiff serve`) "
                     "running for you, with their model, device, resident memory and URL or time left.")
