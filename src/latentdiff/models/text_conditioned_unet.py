"""The trainable module of `latentdiff train-unet --train-text-encoder`: the U-Net and the CLIP text tower it
cross-attends to, trained together on the denoising loss (diffusers' DreamBooth script `--train_text_encoder`,
kohya's sd-scripts without `--network_train_unet_only`).

Why: a frozen text encoder trained contrastively on small data may give two different concepts nearly the
same hidden states (a 128-wide, 3-layer CLIP for 3,382 emoji in 14 languages), and then no U-Net can draw
them apart. Trained on the U-Net's loss, the encoder moves each caption's states to where they tell the
U-Net what to draw. The pipeline it exports loads with `StableDiffusionPipeline.from_pretrained` as before:
its text_encoder/ is the trained one.
"""

from __future__ import annotations

import torch

TEXT_ENCODER_PREFIX = "text_encoder."  # parameter names of the text tower in this module's state dict


class UNetWithTextEncoder(torch.nn.Module):
    """forward(noisy latents (B, C, h, w), timesteps (B,), token ids (B, L)) -> the U-Net's prediction (B, C, h, w).

    One module, so that the training loop's optimizer, EMA, checkpoints and (under DDP) gradient sync cover
    both parts, and the forward pass runs through the wrapper that accelerate prepared."""

    def __init__(self, unet: torch.nn.Module, text_encoder: torch.nn.Module, text_encoder_lr: float | None = None):
        super().__init__()
        self.unet, self.text_encoder = unet, text_encoder
        self.text_encoder_lr = text_encoder_lr  # None: the U-Net's; read by the optimizer (lr_overrides)

    def encode(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids -> (B, L, D) last hidden states, as StableDiffusionPipeline.encode_prompt gives them."""
        return self.text_encoder(input_ids)[0]

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        return self.unet(noisy, timesteps, encoder_hidden_states=self.encode(input_ids)).sample

    def lr_overrides(self) -> dict[str, float]:
        """Peak learning rates by parameter-name prefix, for the parameters that do not take the run's --lr."""
        return {} if self.text_encoder_lr is None else {TEXT_ENCODER_PREFIX: self.text_encoder_lr}


def unet_of(model: torch.nn.Module) -> torch.nn.Module:
    """The U-Net inside an (unwrapped) trainable module: the wrapper's, or the module itself."""
    return model.unet if isinstance(model, UNetWithTextEncoder) else model
