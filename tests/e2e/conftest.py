"""Fixtures shared by the end-to-end tests. Every test in tests/e2e is in the `slow` tier (see
tests/conftest.py): `pytest -m "not slow"` leaves them out, `make test` runs them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from latentdiff import cli


@dataclass(frozen=True)
class TrainedChain:
    data: Path  # a prepared `shapes` dataset (64x64, 500 images: about 30 in the test split)
    run: Path  # RUN_DIR of `latentdiff train`: clip/, vae/, pipeline/
    train_argv: tuple[str, ...]  # the `latentdiff train` command line that made `run` (rerun it to resume)


@pytest.fixture(scope="session")
def trained_chain(tmp_path_factory) -> TrainedChain:
    """The whole tiny chain as a user runs it, once per session: `prepare-data shapes`, then `train` (CLIP, VAE,
    U-Net, tiny presets, 10 steps each). Tests only read it (copy it to change it), so one training serves
    test_train_chain.py and test_evaluate.py, which each trained their own before."""
    root = tmp_path_factory.mktemp("trained_chain")
    data, run = root / "shapes", root / "run"
    assert cli.main(["prepare-data", "shapes", "--out", str(data), "--num-images", "500", "--image-size", "64"]) == 0
    argv = ("train", "--data", str(data), "--out", str(run), "--preset", "tiny", "--batch-size", "8",
            "--clip-max-steps", "10", "--vae-max-steps", "10", "--unet-max-steps", "10")
    assert cli.main(list(argv)) == 0
    return TrainedChain(data, run, argv)
