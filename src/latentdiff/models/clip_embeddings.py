"""CLIP embeddings of images and captions: the one computation that training-time retrieval validation,
`evaluate` (CLIP score, retrieval) and every other caller share, so their numbers are comparable.

Captions are tokenized as in training: padded to the text tower's length (the tokenizer's limit, at most
the position embeddings), truncated beyond it, with the attention mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image

EMBED_BATCH_SIZE = 64  # images or captions encoded at once


def text_length(model, tokenizer) -> int:
    """Tokens per caption: the tokenizer's limit, but never past the text tower's position embeddings."""
    return min(int(tokenizer.model_max_length), model.config.text_config.max_position_embeddings)


def clip_tokens(tokenizer, captions: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """{"input_ids", "attention_mask"}: (B, max_length) each."""
    encoded = tokenizer(captions, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def projected(output) -> torch.Tensor:
    """Projected embeddings from `get_*_features`: a tensor in transformers 4, an output object whose
    `pooler_output` holds them in transformers 5."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@torch.no_grad()
def encode_images(model, processor, images: list[Image.Image], batch_size: int = EMBED_BATCH_SIZE) -> torch.Tensor:
    """PIL images -> (N, D) L2-normalised image embeddings (fp32, on the CPU). `processor` is the CLIP
    folder's image processor (or a CLIPProcessor)."""
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        pixels = processor(images=images[start:start + batch_size], return_tensors="pt")["pixel_values"]
        out.append(projected(model.get_image_features(pixel_values=pixels.to(device))).float().cpu())
    return F.normalize(torch.cat(out), dim=-1)


@torch.no_grad()
def encode_texts(model, tokenizer, texts: list[str], batch_size: int = EMBED_BATCH_SIZE) -> torch.Tensor:
    """Captions -> (N, D) L2-normalised text embeddings (fp32, on the CPU)."""
    device = next(model.parameters()).device
    length = text_length(model, tokenizer)
    out = []
    for start in range(0, len(texts), batch_size):
        tokens = {k: v.to(device) for k, v in clip_tokens(tokenizer, texts[start:start + batch_size], length).items()}
        out.append(projected(model.get_text_features(**tokens)).float().cpu())
    return F.normalize(torch.cat(out), dim=-1)
