"""Prompt fidelity: does the image generated for a caption look like *that caption's* real image?

For each test caption i we generate one image, then rank the real test images by feature distance to it
(the same EfficientNet-Lite0 features as fd_lite0). A hit at k means a real image carrying caption i is
among the k nearest. Captions that several real images share (e.g. "a red circle" in `shapes`) count a
hit for any of them, and the chance level accounts for that exactly.

A model that ignores its prompt scores near the chance level; a perfect one scores near 1.
"""

from __future__ import annotations

from math import comb

import torch

TOP_K = (1, 5)


def _caption_matches(captions: list[str], real_captions: list[list[str]]) -> torch.Tensor:
    """(N_gen, N_real) bool: real image j carries generated caption i."""
    return torch.tensor([[caption in reals for reals in real_captions] for caption in captions], dtype=torch.bool)


def nearest_real_ranks(generated: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """generated (N_gen, D), real (N_real, D) -> (N_gen, N_real) real indices ordered nearest first.

    Euclidean distance; a stable sort breaks ties by index so the same features give the same order."""
    distances = torch.cdist(generated.double(), real.double())  # (N_gen, N_real)
    return torch.sort(distances, dim=1, stable=True).indices


def chance_top_k(matches: torch.Tensor, k: int) -> float:
    """Expected top-k hit rate of a ranking that ignores the prompt: 1 - C(N-m, k) / C(N, k) per caption,
    m the number of real images carrying that caption, averaged over captions."""
    total = matches.shape[1]
    k = min(k, total)
    rates = [1.0 - comb(total - int(m), k) / comb(total, k) for m in matches.sum(dim=1).tolist()]
    return sum(rates) / len(rates)


def prompt_fidelity(generated: torch.Tensor, real: torch.Tensor, captions: list[str],
                    real_captions: list[list[str]], top_k: tuple[int, ...] = TOP_K) -> dict[str, float]:
    """generated[i] was made from captions[i]; real[j] is the real image with captions real_captions[j].

    Returns {"top1": ..., "top5": ..., "chance_top1": ..., "chance_top5": ..., "num_captions": N}."""
    matches = _caption_matches(captions, real_captions)  # (N_gen, N_real)
    order = nearest_real_ranks(generated, real)  # (N_gen, N_real)
    hits_in_order = torch.gather(matches, 1, order)  # (N_gen, N_real): is the r-th nearest a match?
    result: dict[str, float] = {}
    for k in top_k:
        result[f"top{k}"] = float(hits_in_order[:, :k].any(dim=1).double().mean())
        result[f"chance_top{k}"] = chance_top_k(matches, k)
    result["num_captions"] = len(captions)
    return result
