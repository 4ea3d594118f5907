"""The optimizer of the training loop, and the check of an optimizer state read from a checkpoint."""

from __future__ import annotations

import torch

from latentdiff.config import TrainConfig


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with decoupled weight decay on weight matrices and kernels only: biases, norms and other 1-D
    parameters are not decayed (as open_clip and nanoGPT do)."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr)


def check_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """`load_state_dict` takes moment tensors of any shape; a foreign optimizer.pt would then fail only at
    the first step, deep in AdamW. Each per-parameter state tensor must have its parameter's shape."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            for name, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape != param.shape:
                    raise ValueError(f"optimizer state '{name}' has shape {tuple(value.shape)} for a parameter of "
                                     f"shape {tuple(param.shape)}")
