"""The contract between the one training loop and a stage (CLIP, VAE, U-Net).

The loop (`latentdiff.training.loop.train(task, cfg, out_dir)`) owns everything that is the same for
every stage: accelerate (devices, mixed precision, gradient accumulation, multi-process), AdamW and the LR
schedule with warmup, gradient clipping, EMA, the progress bar, TensorBoard (`out_dir/logs`), validation
and checkpoint cadence, NaN stops, atomic checkpoints (`out_dir/training_state/`) and bit-exact resume.
A task owns its models, its data and its loss. How the loop uses a task, in order:

    model = task.trainable_module()          # built from preset/--init BEFORE train(); weights may be
                                             # overwritten by a resumed checkpoint afterwards
    dataset = task.train_dataset()           # map-style; the loop picks indices (seeded, resumable)
    ... per micro-batch: batch = task.collate([dataset[i] for i in indices])
                         loss, logs = task.loss(wrapped_model, batch_on_device, generator)
    ... every cfg.validate_every steps and at the end (main process only):
                         metrics = task.validate(unwrapped_model, step, out_dir)
    ... at the end (main process only): task.export(unwrapped_model, out_dir), then the stage is
        marked complete (`latentdiff.checkpoint.is_stage_complete(out_dir)` becomes True).

Rules a task must follow so that a SIGKILLed-and-resumed run is bit-identical to an uninterrupted one:
- all randomness in `loss` comes from the `generator` argument (a CPU `torch.Generator`, one per
  process, saved in every checkpoint): draw on CPU, then `.to(device)`;
  never `torch.randn(...)` without it, never Python's `random` module without a seeded instance.
- `collate` and `dataset[i]` are deterministic (no random augmentation; the loop may run them in
  DataLoader workers when `--num-workers > 0`).
- `validate` may use any randomness it likes (the loop saves and restores every RNG around it) but must
  not change the model's weights; the loop puts the model in eval mode for it and back to train after.
- frozen parts (a VAE, a text encoder, caches) live on the task, not in `trainable_module()`; move them
  to `device` yourself in `loss` (e.g. lazily on first call: `batch` tensors are already on it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch


class TrainingTask(Protocol):
    name: str  # "clip", "align-text", "vae", "unet": used in logs and the progress bar

    def trainable_module(self) -> torch.nn.Module:
        """The module whose parameters the optimizer updates (and EMA tracks). Built by the task from
        its preset or `--init` before the loop starts; frozen parts (a VAE, a text encoder) live on
        the task, not here. Called once. Parameters with requires_grad=False are not optimized.
        1-D parameters (biases, norms, a logit scale) get no weight decay."""

    def train_dataset(self) -> torch.utils.data.Dataset:
        """The training items; the loop wraps it in a seeded, resumable sampler and a DataLoader."""

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Items -> a batch (tensors stacked; the loop moves every top-level tensor to the device)."""

    def loss(self, model: torch.nn.Module, batch: dict[str, Any], generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar loss for the batch and extra numbers to log. `model` is the (possibly wrapped)
        trainable module; `generator` is the loop's seeded per-process generator for any randomness
        (noise, timesteps, caption choice) so a resumed run draws the same numbers."""

    def validate(self, model: torch.nn.Module, step: int, out_dir: Path) -> dict[str, Any]:
        """Metrics on the validation split, plus any pictures written under `out_dir`. `model` is the
        unwrapped module (EMA weights when EMA is on). The loop logs the returned numbers to
        TensorBoard under `val/<name>`; write your own metrics file if the stage promises one.
        A value may also be a PIL image (a sample grid): the loop logs it as a TensorBoard image under
        `val/<name>` and leaves it out of the numbers it prints and returns."""

    def export(self, model: torch.nn.Module, out_dir: Path) -> None:
        """Write the released artefact (a CLIPModel folder, an AutoencoderKL folder, a pipeline folder)
        in standard formats with safetensors weights. `model` is unwrapped (EMA weights if EMA is on)."""
