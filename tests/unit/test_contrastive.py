"""Symmetric InfoNCE with CLIP's clamped temperature."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from latentdiff.losses.contrastive import LOGIT_SCALE_MAX, clamp_logit_scale_, clip_contrastive_loss


def _unit(x):
    return F.normalize(x, dim=-1)


def test_matching_pairs_score_lower_than_shuffled_pairs():
    g = torch.Generator().manual_seed(0)
    images = _unit(torch.randn(8, 16, generator=g))
    texts = _unit(images + 0.1 * torch.randn(8, 16, generator=g))
    scale = torch.tensor(math.log(10.0))
    matched = clip_contrastive_loss(images, texts, scale)
    shuffled = clip_contrastive_loss(images, texts[torch.roll(torch.arange(8), 1)], scale)
    assert matched < 0.5 * shuffled


def test_is_symmetric_and_equals_mean_of_both_cross_entropies():
    g = torch.Generator().manual_seed(1)
    images, texts = _unit(torch.randn(5, 8, generator=g)), _unit(torch.randn(5, 8, generator=g))
    scale = torch.tensor(2.0)
    logits = scale.exp() * images @ texts.t()
    labels = torch.arange(5)
    expected = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
    assert torch.allclose(clip_contrastive_loss(images, texts, scale), expected)
    assert torch.allclose(clip_contrastive_loss(images, texts, scale), clip_contrastive_loss(texts, images, scale))


def test_uniform_embeddings_give_log_batch_size():
    same = _unit(torch.ones(6, 4))
    assert torch.allclose(clip_contrastive_loss(same, same, torch.tensor(1.0)), torch.tensor(math.log(6)))


def test_temperature_is_learnable_but_capped_at_100():
    images = _unit(torch.eye(4))
    scale = torch.nn.Parameter(torch.tensor(1.0))
    clip_contrastive_loss(images, images, scale).backward()
    assert scale.grad is not None and scale.grad < 0  # perfect pairs: a sharper softmax lowers the loss
    big = torch.nn.Parameter(torch.tensor(10.0))
    assert torch.allclose(clip_contrastive_loss(images, images, big),
                          clip_contrastive_loss(images, images, torch.tensor(LOGIT_SCALE_MAX)))
    clamp_logit_scale_(big)
    assert math.isclose(float(big.detach()), math.log(100.0), rel_tol=1e-6)
