"""The optimizer of the training loop, and the check of an optimizer state read from a checkpoint."""

from __future__ import annotations

import torch

from latentdiff.config import TrainConfig


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with decoupled weight decay on weight matrices and kernels only: biases, norms and other 1-D
    parameters are not decayed (as open_clip and nanoGPT do).
    A module may give some of its parameters another peak lr (`lr_overrides()`: parameter-name prefix -> lr, e.g.
    the text encoder of `UNetWithTextEncoder`); the LR schedule scales every group's lr by the same factor."""
    overrides = model.lr_overrides() if hasattr(model, "lr_overrides") else {}
    groups: dict[tuple[float, bool], list[torch.nn.Parameter]] = {}  # (lr, decayed) -> parameters
    for name, param in model.named_parameters():
        if param.requires_grad:
            lr = next((value for prefix, value in overrides.items() if name.startswith(prefix)), cfg.lr)
            groups.setdefault((lr, param.ndim >= 2), []).append(param)
    # The run's lr first, decayed before not: the group order of checkpoints written before overrides existed.
    order = sorted(groups, key=lambda key: (key[0] != cfg.lr, not key[1]))
    return torch.optim.AdamW([{"params": groups[lr, decayed], "lr": lr, "weight_decay": cfg.weight_decay if decayed else 0.0}
                              for lr, decayed in order], lr=cfg.lr)


def check_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """`load_state_dict` takes moment tensors of any shape; a foreign optimizer.pt would then fail only at
    the first step, deep in AdamW. Each per-parameter state tensor must have its parameter's shape."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            for name, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape != param.shape:
                    raise ValueError(f"optimizer state '{name}' has shape {tuple(value.shape)} for a parameter of "
                                     f"shape {tuple(param.shape)}")
