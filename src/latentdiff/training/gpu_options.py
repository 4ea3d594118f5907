"""Speed and memory options of the training loop that matter on GPUs: gradient checkpointing and
`torch.compile`, applied to a task's trainable module the same way for every stage.

- `--gradient-checkpointing`: the library's own switch (diffusers `enable_gradient_checkpointing()` for the
  U-Net and the VAE, transformers `gradient_checkpointing_enable()` for CLIP): activations inside each
  block are recomputed in the backward pass instead of kept, trading ~30% more compute for memory that
  no longer grows with depth, which is what lets the `base` U-Net (860M params) train at batch 8+ on a
  24-80 GB card. The gradients are the same computation, so the numbers do not change.
- `--compile`: `nn.Module.compile()` (torch >= 2.2) compiles the module's forward in place, so its
  state dict, its saving and accelerate's DDP wrapper stay as they are. The first steps are slow
  (compilation); worth it for long GPU runs, rarely on a CPU.
Attention already goes through PyTorch's fused scaled_dot_product_attention in both libraries (diffusers'
AttnProcessor2_0, transformers' "sdpa" implementation): `attention_backends` says which per module.
"""

from __future__ import annotations

import torch

from latentdiff.errors import UserError


def _switch(module: torch.nn.Module):
    """The library's gradient-checkpointing switch of `module`, or None."""
    if hasattr(module, "enable_gradient_checkpointing"):  # diffusers ModelMixin
        return module.enable_gradient_checkpointing
    kwargs = {"use_reentrant": False}  # the non-reentrant form works with DDP and frozen inputs
    if hasattr(module, "activation_checkpointing_enable"):  # transformers >= 5.x (the old name is deprecated)
        return lambda: module.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    if hasattr(module, "gradient_checkpointing_enable"):  # transformers 4
        return lambda: module.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    return None


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """On `model`, or else on the outermost library models inside it (e.g. the AutoencoderKL that
    `VaeForTraining` wraps)."""
    switch = _switch(model)
    if switch is not None:
        switch()
        return
    found = [m for name, m in model.named_modules() if name and _switch(m) is not None]
    outermost = [m for m in found if not any(m is not o and any(m is c for c in o.modules()) for o in found)]
    if not outermost:
        raise UserError(f"--gradient-checkpointing is not supported by {type(model).__name__}; drop the option.")
    for module in outermost:
        _switch(module)()


def apply_training_options(model: torch.nn.Module, gradient_checkpointing: bool, compile: bool) -> None:
    """Called by the loop on the trainable module before accelerate wraps it."""
    if gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if compile:
        if not hasattr(model, "compile"):
            raise UserError("--compile needs torch 2.2 or newer (nn.Module.compile); upgrade torch or drop --compile.")
        model.compile()


def attention_backends(model: torch.nn.Module) -> set[str]:
    """Names of the attention implementations a diffusers or transformers model runs, e.g.
    {"AttnProcessor2_0"} (diffusers SDPA) or {"sdpa"} (transformers)."""
    if hasattr(model, "attn_processors"):
        return {type(p).__name__ for p in model.attn_processors.values()}
    config = getattr(model, "config", None)
    return {getattr(config, "_attn_implementation", None) or "eager"}
