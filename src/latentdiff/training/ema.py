"""EMA of the trainable weights (diffusers' `EMAModel`), saved by parameter name as safetensors."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import torch
from diffusers.training_utils import EMAModel

from latentdiff import checkpoint


def make_ema(module: torch.nn.Module, decay: float):
    """None when EMA is off (decay 0)."""
    if decay <= 0:
        return None
    if decay >= 1:
        raise ValueError("ema_decay must be below 1")

    return EMAModel(module.parameters(), decay=decay)


def save_ema(ema, module: torch.nn.Module, path: Path) -> dict:
    """Shadow weights to `path` (safetensors, keyed like the module's parameters); returns the scalars."""
    names = [name for name, _ in module.named_parameters()]
    checkpoint.save_tensors(dict(zip(names, ema.shadow_params)), path)
    return {key: value for key, value in ema.state_dict().items() if key != "shadow_params"}


def load_ema(ema, module: torch.nn.Module, path: Path, scalars: dict) -> None:
    tensors = checkpoint.load_tensors(path)
    shadow = [tensors[name].to(param.device) for name, param in module.named_parameters()]
    ema.load_state_dict({**scalars, "shadow_params": shadow})


@contextlib.contextmanager
def ema_weights(ema, module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Temporarily put the EMA weights into `module` (for validation); the raw weights come back after."""
    if ema is None:
        yield module
        return
    ema.store(module.parameters())
    ema.copy_to(module.parameters())
    try:
        yield module
    finally:
        ema.restore(module.parameters())
