"""A TrainingTask small enough to train in milliseconds: fit y = W x on random data, with noise drawn
from the loop's generator. Knobs make it crash (to test resume), diverge (to test the NaN stop) or slow
(to test time budgets)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from latentdiff.checkpoint import write_json_atomic


class ToyDataset(torch.utils.data.Dataset):
    def __init__(self, count: int = 40, dim: int = 4):
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(count, dim, generator=g)
        self.y = self.x @ torch.randn(dim, dim, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"x": self.x[i], "y": self.y[i]}


class ToyTask:
    name = "toy"

    def __init__(self, crash_at_step: int | None = None, nan_at_step: int | None = None, dim: int = 4,
                 step_seconds: float = 0.0):
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Linear(dim, 16), torch.nn.Tanh(), torch.nn.Linear(16, dim))
        self.crash_at_step, self.nan_at_step = crash_at_step, nan_at_step
        self.step_seconds = step_seconds  # each loss call sleeps this long: steps slow enough for --max-minutes tests
        self.calls = 0
        self.exported: Path | None = None

    def trainable_module(self):
        return self.model

    def train_dataset(self):
        return ToyDataset()

    def collate(self, items):
        return {"x": torch.stack([i["x"] for i in items]), "y": torch.stack([i["y"] for i in items])}

    def loss(self, model, batch, generator):
        self.calls += 1
        if self.step_seconds:
            time.sleep(self.step_seconds)
        if self.crash_at_step is not None and self.calls > self.crash_at_step:
            raise RuntimeError("simulated crash")
        noise = 0.01 * torch.randn(batch["x"].shape, generator=generator)
        loss = ((model(batch["x"] + noise) - batch["y"]) ** 2).mean()
        loss = loss + 1e-3 * torch.rand((), generator=generator) + 0 * torch.rand(())  # global RNG used too
        if self.nan_at_step is not None and self.calls >= self.nan_at_step:
            loss = loss * float("nan")
        return loss, {"calls": float(self.calls)}

    def validate(self, model, step, out_dir):
        torch.randn(5)  # validation may draw from the global RNG; the loop must hide that from training
        write_json_atomic(Path(out_dir) / "toy_metrics.json", {"step": step})
        return {"weight_norm": float(sum(p.norm() for p in model.parameters()))}

    def export(self, model, out_dir):
        from safetensors.torch import save_model

        save_model(model, str(Path(out_dir) / "toy.safetensors"))
        self.exported = Path(out_dir)
