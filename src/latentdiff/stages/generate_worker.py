"""The keep-alive worker process of `latentdiff generate`, started by `keep_alive.start_worker` as
`python -m latentdiff.stages.generate_worker KEY MODEL DEVICE SECONDS BACKEND`: `keep_alive.serve` holding a loaded
pipeline and answering each request with the same `stages.generate.run` an in-process call runs."""

from __future__ import annotations

import json
import sys

from pathlib import Path

from latentdiff import keep_alive
from latentdiff.export.layout import exported_format
from latentdiff.model_source import resolve_model
from latentdiff.pipeline import TextToImage
from latentdiff.stages.generate import run


def model_folder(model: str | None) -> Path:
    """The folder whose files the worker watches: a `latentdiff export` folder as it is, else the pipeline's."""
    if model and exported_format(Path(model)):
        return Path(model)
    return resolve_model(model).path


HOOKS = keep_alive.WorkerHooks(load=TextToImage.load, locate=model_folder, run=run)

if __name__ == "__main__":
    key, model, device, keep_alive_s, backend = sys.argv[1:6]
    raise SystemExit(keep_alive.serve(key, json.loads(model), json.loads(device), float(keep_alive_s),
                                      json.loads(backend), HOOKS))
