"""Image <-> text retrieval metrics over a whole split (every caption of every image).

Given N_img image embeddings, N_txt caption embeddings and which image each caption describes:
- text -> image: each caption ranks all images; the rank of its own image (1 = first).
- image -> text: each image ranks all captions; a hit is ANY of its own captions, so the rank is that of
  its best-placed own caption (the convention of Karpathy's Flickr/COCO retrieval splits).
Ties count in the caption's/image's favour: rank = 1 + number of strictly better wrong answers.
R@k is the share of queries with rank <= k; chance level is about k / (number of candidates).
"""

from __future__ import annotations

import torch

RECALL_KS = (1, 5, 10)


def _summary(ranks: torch.Tensor) -> dict[str, float]:
    ranks = ranks.double()
    out = {f"R@{k}": float((ranks <= k).double().mean()) for k in RECALL_KS}
    out["mean_rank"] = float(ranks.mean())
    out["median_rank"] = float(ranks.median())
    return out


@torch.no_grad()
def retrieval_metrics(image_embeds: torch.Tensor, text_embeds: torch.Tensor, text_to_image: torch.Tensor) -> dict[str, dict[str, float]]:
    """`image_embeds` (N_img, D), `text_embeds` (N_txt, D), both L2-normalised; `text_to_image` (N_txt,)
    long: the image index of each caption. Returns {"image_to_text": {...}, "text_to_image": {...}}."""
    image_embeds, text_embeds = image_embeds.float(), text_embeds.float()
    text_to_image = text_to_image.long()
    scores = text_embeds @ image_embeds.t()  # (N_txt, N_img) cosine similarities
    own = scores.gather(1, text_to_image[:, None])  # (N_txt, 1) score of each caption's own image
    t2i_ranks = 1 + (scores > own).sum(dim=1)  # (N_txt,)

    scores_i = scores.t()  # (N_img, N_txt)
    is_own = text_to_image[None, :] == torch.arange(image_embeds.shape[0])[:, None]  # (N_img, N_txt)
    best_own = scores_i.masked_fill(~is_own, float("-inf")).max(dim=1, keepdim=True).values  # (N_img, 1)
    i2t_ranks = 1 + ((scores_i > best_own) & ~is_own).sum(dim=1)  # (N_img,)
    has_caption = is_own.any(dim=1)
    return {"image_to_text": _summary(i2t_ranks[has_caption]), "text_to_image": _summary(t2i_ranks)}


def flatten_metrics(metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    """{"image_to_text": {"R@1": x}} -> {"image_to_text/R@1": x} (TensorBoard tags, progress lines)."""
    return {f"{direction}/{name}": value for direction, values in metrics.items() for name, value in values.items()}
