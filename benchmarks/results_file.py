"""The one way benchmarks write their results file: indented JSON (non-ASCII kept readable), then say where."""

from __future__ import annotations

import json
from pathlib import Path


def write_results(result: dict, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out}")
    return out
