"""The contract between the one training loop and a stage (CLIP, VAE, U-Net).

The loop (`latentdiff.training.loop`) owns everything that is the same for every stage: accelerate
(devices, mixed precision, gradient accumulation, multi-process), the optimizer and LR schedule with
warmup, gradient clipping, EMA, the progress bar, TensorBoard, validation and checkpoint cadence,
NaN stops, atomic checkpoints and bit-exact resume. A task owns its models, its data and its loss.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch


class TrainingTask(Protocol):
    name: str  # "clip", "vae", "unet": used in logs and checkpoint folder names

    def trainable_module(self) -> torch.nn.Module:
        """The module whose parameters the optimizer updates (and EMA tracks). Built by the task from
        its preset or `--init` before the loop starts; frozen parts (a VAE, a text encoder) live on
        the task, not here."""

    def train_dataset(self) -> torch.utils.data.Dataset:
        """The training items; the loop wraps it in a seeded, resumable sampler and a DataLoader."""

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Items -> a batch (tensors stacked; the loop moves tensors to the device)."""

    def loss(self, model: torch.nn.Module, batch: dict[str, Any], generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar loss for the batch and extra numbers to log. `model` is the (possibly wrapped)
        trainable module; `generator` is the loop's seeded per-process generator for any randomness
        (noise, timesteps, caption choice) so a resumed run draws the same numbers."""

    def validate(self, model: torch.nn.Module, step: int, out_dir: Path) -> dict[str, float]:
        """Metrics on the validation split, plus any pictures written under `out_dir`. `model` is the
        unwrapped module (EMA weights when EMA is on)."""

    def export(self, model: torch.nn.Module, out_dir: Path) -> None:
        """Write the released artefact (a CLIPModel folder, an AutoencoderKL folder, a pipeline folder)
        in standard formats with safetensors weights. `model` is unwrapped (EMA weights if EMA is on)."""
