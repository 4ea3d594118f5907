"""Shared fixtures. `tests/helpers` holds builders used by several test files (and benchmarks)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# `latentdiff generate` leaves a keep-alive worker after each run: tests must neither leave processes behind
# nor be answered by (or stop) a worker of the user's (tests/unit/test_keep_alive.py turns workers on
# explicitly, each test in its own runtime folder)
os.environ["LATENTDIFF_KEEP_ALIVE"] = "0"
os.environ["LATENTDIFF_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="latentdiff-test-runtime-")
atexit.register(shutil.rmtree, os.environ["LATENTDIFF_RUNTIME_DIR"], ignore_errors=True)
# The default backend on a CPU is onnx, which exports each new model once (seconds) and moves pixels by up to
# 1/255: tests compare pixels with diffusers' and build many throwaway models, so they run on torch unless they
# test a backend (tests/unit/test_backend_default.py unsets this to test the default itself; test_export.py
# and the e2e chain's generate run onnx). Exports go to a temporary cache, never the user's.
os.environ["LATENTDIFF_BACKEND"] = "torch"
os.environ["LATENTDIFF_CACHE_DIR"] = tempfile.mkdtemp(prefix="latentdiff-test-cache-")
atexit.register(shutil.rmtree, os.environ["LATENTDIFF_CACHE_DIR"], ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory):
    """A randomly initialised, `tiny`-preset StableDiffusionPipeline folder (safetensors, no safety
    checker), so generation tests do not depend on training. Treat it as read-only: copy it to modify."""
    from helpers.random_pipeline import build_random_pipeline

    return build_random_pipeline(tmp_path_factory.mktemp("tiny_pipeline") / "tiny", "tiny", seed=0)


# Two tiers. `pytest -m "not slow"` (make test-quick) is the quick tier for every edit; `make test` runs
# everything. `slow`: all of tests/e2e (marked here, by folder) and the unit tests that took over ~5 s under
# `pytest --durations` on the 2-core development CPU (marked where they are defined, with their time).
E2E_DIR = Path(__file__).resolve().parent / "e2e"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if E2E_DIR in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.slow)
