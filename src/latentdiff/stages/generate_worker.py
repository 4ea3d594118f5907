"""The keep-alive worker process of `latentdiff generate`, started by `keep_alive.start_worker` as
`python -m latentdiff.stages.generate_worker KEY MODEL DEVICE SECONDS`: `keep_alive.serve` holding a loaded
pipeline and answering each request with the same `stages.generate.run` an in-process call runs."""

from __future__ import annotations

import json
import sys

from latentdiff import keep_alive
from latentdiff.model_source import resolve_model
from latentdiff.pipeline import TextToImage
from latentdiff.stages.generate import run

HOOKS = keep_alive.WorkerHooks(load=TextToImage.load, locate=lambda model: resolve_model(model).path, run=run)

if __name__ == "__main__":
    key, model, device, keep_alive_s = sys.argv[1:5]
    raise SystemExit(keep_alive.serve(key, json.loads(model), json.loads(device), float(keep_alive_s), HOOKS))
