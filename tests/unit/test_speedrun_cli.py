"""benchmarks/speedrun.py --measure: a folder that is not a finished pipeline (e.g. a train-unet run still
training) is refused in one sentence before anything is loaded or written, not with a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SPEEDRUN = Path(__file__).resolve().parents[2] / "benchmarks" / "speedrun.py"


def test_measuring_an_unfinished_run_says_what_to_pass(tmp_path):
    run = tmp_path / "still-training"
    (run / "training_state").mkdir(parents=True)
    work = tmp_path / "work"
    result = subprocess.run([sys.executable, str(SPEEDRUN), "--name", "x", "--data", str(tmp_path / "data"),
                             "--measure", str(run), "--work", str(work)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "not a pipeline folder (no model_index.json)" in result.stderr
    assert "Traceback" not in result.stderr and not work.exists()
