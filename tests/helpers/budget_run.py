"""Run by torchrun from tests/e2e/test_multiprocess.py: the toy task under a 1.2 s --max-minutes budget, steps of
10 ms, at most 1,000 steps; rank 0 prints the step it ended at."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `helpers` as the unit tests import it

from helpers.toy_task import ToyTask  # noqa: E402

from latentdiff.config import TrainConfig  # noqa: E402
from latentdiff.training.loop import train  # noqa: E402


if __name__ == "__main__":
    out = sys.argv[1]
    cfg = TrainConfig(data="unused", out=out, seed=3, max_steps=1000, batch_size=4, lr=1e-2, epochs=1, warmup_steps=3,
                      checkpoint_every=0, validate_every=0, mixed_precision="no", max_minutes=0.02,
                      lr_scheduler="cosine")
    result = train(ToyTask(step_seconds=0.01), cfg, out)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"ended at step {result.step}", flush=True)
