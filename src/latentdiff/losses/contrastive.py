"""Symmetric InfoNCE, the CLIP objective (Radford et al. 2021, Fig. 3).

Each image in a batch of B should pick its own caption among the B captions, and each caption its own
image: cross-entropy over the (B, B) similarity matrix along both axes, averaged. The temperature is
learned as `logit_scale` = ln(1 / T) and capped at ln 100 (CLIP clips the scale at 100 "to prevent
training instability"), so logits never exceed 100 x cosine similarity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOGIT_SCALE_MAX = math.log(100.0)  # the clamp of CLIP's learnable temperature, in log space


def clip_contrastive_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """`image_embeds`, `text_embeds`: (B, D), L2-normalised, row i of one matching row i of the other.
    `logit_scale`: the raw learnable scalar (log of the inverse temperature). Returns a scalar."""
    scale = logit_scale.clamp(max=LOGIT_SCALE_MAX).exp()
    logits_per_image = scale * image_embeds @ text_embeds.t()  # (B, B): row = image, column = caption
    labels = torch.arange(image_embeds.shape[0], device=image_embeds.device)
    return 0.5 * (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_image.t(), labels))


@torch.no_grad()
def clamp_logit_scale_(logit_scale: torch.nn.Parameter) -> None:
    """Keep the stored parameter inside [0, ln 100] too, so the saved model's own logits obey the cap."""
    logit_scale.clamp_(0.0, LOGIT_SCALE_MAX)
