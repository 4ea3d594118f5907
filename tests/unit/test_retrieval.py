"""Retrieval metrics over every caption of a split."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from latentdiff.evaluation.retrieval import flatten_metrics, retrieval_metrics


def test_perfect_embeddings_give_recall_one_and_rank_one():
    g = torch.Generator().manual_seed(0)
    images = F.normalize(torch.randn(30, 16, generator=g), dim=-1)
    owners = torch.arange(30).repeat_interleave(3)  # three captions per image
    metrics = retrieval_metrics(images, images[owners], owners)
    for direction in ("image_to_text", "text_to_image"):
        assert metrics[direction]["R@1"] == 1.0
        assert metrics[direction]["mean_rank"] == 1.0 and metrics[direction]["median_rank"] == 1.0


def test_random_embeddings_are_near_chance():
    g = torch.Generator().manual_seed(1)
    num_images = 400
    images = F.normalize(torch.randn(num_images, 64, generator=g), dim=-1)
    owners = torch.arange(num_images).repeat_interleave(2)
    texts = F.normalize(torch.randn(2 * num_images, 64, generator=g), dim=-1)
    metrics = retrieval_metrics(images, texts, owners)
    t2i = metrics["text_to_image"]
    assert abs(t2i["R@10"] - 10 / num_images) < 0.02
    assert abs(t2i["mean_rank"] - (num_images + 1) / 2) < 0.1 * num_images
    # image -> text: the best of 2 own captions among 800 is expected near 800 / 3
    assert abs(metrics["image_to_text"]["mean_rank"] - 2 * num_images / 3) < 0.15 * num_images


def test_image_to_text_counts_a_hit_if_any_own_caption_is_within_k():
    images = torch.eye(3)
    # image 0's first caption points at image 1, its second at image 0
    texts = torch.stack([torch.eye(3)[1], torch.eye(3)[0], torch.eye(3)[1], torch.eye(3)[2]])
    owners = torch.tensor([0, 0, 1, 2])
    metrics = retrieval_metrics(images, texts, owners)
    assert metrics["image_to_text"]["R@1"] == 1.0  # every image has some own caption ranked first...
    assert metrics["text_to_image"]["R@1"] == 0.75  # ...but caption 0 ranks image 1 above its own image
    assert flatten_metrics(metrics)["text_to_image/R@1"] == 0.75


def test_ranks_a_wrong_answer_above_the_right_one():
    images = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1)
    texts = F.normalize(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), dim=-1)  # swapped
    metrics = retrieval_metrics(images, texts, torch.tensor([0, 1]))
    assert metrics["text_to_image"]["R@1"] == 0.0 and metrics["text_to_image"]["mean_rank"] == 2.0
