"""The keep-alive worker process of `latentdiff generate`, started by `keep_alive.start_worker` as
`python -m latentdiff.stages.generate_worker KEY MODEL DEVICE SECONDS BACKEND`: `keep_alive.serve` holding a loaded
pipeline and answering each request with the same `stages.generate.run` an in-process call runs.

torch, diffusers and the pipeline are imported inside the hooks, not at the top: `keep_alive.serve` binds the
worker's socket before it calls `load`, so a `generate` typed while the worker is still importing finds the
socket and waits for it instead of loading the model a second time in its own process
(tests/unit/test_keep_alive.py checks that importing this module loads no torch)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from latentdiff import keep_alive


def load(model: str | None, device: str | None, backend: str | None):
    from latentdiff.pipeline import TextToImage

    return TextToImage.load(model, device, backend)


def model_folder(model: str | None) -> Path:
    """The folder whose files the worker watches: a `latentdiff export` folder as it is, else the pipeline's."""
    from latentdiff.export.layout import exported_format
    from latentdiff.model_source import resolve_model

    if model and exported_format(Path(model)):
        return Path(model)
    return resolve_model(model).path


def run(cfg, text_to_image):
    from latentdiff.stages.generate import run as generate

    return generate(cfg, text_to_image)


HOOKS = keep_alive.WorkerHooks(load=load, locate=model_folder, run=run)

if __name__ == "__main__":
    key, model, device, keep_alive_s, backend = sys.argv[1:6]
    raise SystemExit(keep_alive.serve(key, json.loads(model), json.loads(device), float(keep_alive_s),
                                      json.loads(backend), HOOKS))
