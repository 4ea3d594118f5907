"""Shared fixtures. `tests/helpers` holds builders used by several test files (and benchmarks)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory):
    """A randomly initialised, `tiny`-preset StableDiffusionPipeline folder (safetensors, no safety
    checker), so generation tests do not depend on training. Treat it as read-only: copy it to modify."""
    from helpers.random_pipeline import build_random_pipeline

    return build_random_pipeline(tmp_path_factory.mktemp("tiny_pipeline") / "tiny", "tiny", seed=0)
