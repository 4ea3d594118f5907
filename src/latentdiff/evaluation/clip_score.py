"""CLIP embeddings of images and captions, CLIP score, and CLIP retrieval on a split.

CLIP score (Hessel et al. 2021, "CLIPScore"; torchmetrics' convention): 100 * max(cos(image, text), 0),
averaged over (image, caption) pairs. Here it is computed with the model's *own* CLIP (the one whose
text tower conditions the U-Net), trained on the same data: an in-domain score, useful to compare models
trained the same way and to compare generated with real images, not comparable to OpenAI-CLIP scores.

Retrieval numbers come from `latentdiff.evaluation.retrieval` (the same code as training validation).
"""

from __future__ import annotations


import torch
from PIL import Image

from latentdiff.evaluation.retrieval import retrieval_metrics
from latentdiff.models.clip_embeddings import encode_images, encode_texts

CLIP_SCORE_SCALE = 100.0


def clip_score(image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> dict[str, float]:
    """Over aligned rows of (N, D) normalised embeddings: the CLIP score, mean of 100 * max(cos, 0), and
    the plain mean cosine, which still moves where a weak CLIP puts every pair below 0 (score 0)."""
    cosine = (image_embeds * text_embeds).sum(dim=-1).double()  # (N,)
    return {"score": float(CLIP_SCORE_SCALE * cosine.clamp(min=0).mean()), "mean_cosine": float(cosine.mean())}


def clip_retrieval(model, tokenizer, processor, images: list[Image.Image],
                   captions: list[list[str]]) -> dict[str, dict[str, float]]:
    """R@1/5/10 and mean/median rank both ways over every caption of every image."""
    flat = [caption for caps in captions for caption in caps]
    owner = torch.tensor([i for i, caps in enumerate(captions) for _ in caps])  # (N_txt,)
    return retrieval_metrics(encode_images(model, processor, images), encode_texts(model, tokenizer, flat), owner)


def text_tower_matches(model, text_encoder) -> bool:
    """Whether a CLIP folder's text tower has exactly the weights of a pipeline's text encoder, or of its first
    layers (a pipeline trained with `train-unet --clip-skip`), so the CLIP score is measured with the CLIP
    that conditions the U-Net."""
    # imported here: importing transformers' CLIP classes takes seconds
    from latentdiff.models.clip import text_tower

    clip_state = model.text_model.state_dict()
    pipe_state = text_tower(text_encoder).state_dict()
    skipped = clip_state.keys() - pipe_state.keys()
    if not pipe_state.keys() <= clip_state.keys() or not all(k.startswith("encoder.layers.") for k in skipped):
        return False
    return all(torch.equal(clip_state[k].float().cpu(), pipe_state[k].float().cpu()) for k in pipe_state)
