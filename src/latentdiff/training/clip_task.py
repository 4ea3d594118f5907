"""ClipTask: contrastive training of a transformers CLIPModel inside the one training loop.

Per step each image is paired with ONE of its captions, drawn with the loop's generator (so a resumed
run draws the same ones); images go through the CLIP image processor that is saved with the model, so
training, validation and users' `CLIPProcessor` see identical pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from latentdiff.checkpoint import write_json_atomic
from latentdiff.data.prepared import ImageRecord, PreparedDataset
from latentdiff.evaluation.retrieval import flatten_metrics, retrieval_metrics
from latentdiff.losses.contrastive import LOGIT_SCALE_MAX, clamp_logit_scale_, clip_contrastive_loss
from latentdiff.models.clip_embeddings import clip_tokens, encode_images, encode_texts, text_length
from latentdiff.models.tokenizer import save_clip_tokenizer

METRICS_FILENAME = "retrieval_metrics.json"


class ClipImageDataset(torch.utils.data.Dataset):
    """Item: {"image": PIL RGB image, "captions": list[str], "index": int}."""

    def __init__(self, records: list[ImageRecord]):
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        with record.open_image() as img:
            image = img.convert("RGB")
        return {"image": image, "captions": record.captions, "index": index}


class ClipTask:
    name = "clip"

    def __init__(self, model, tokenizer, image_processor, dataset: PreparedDataset):
        self.model, self.tokenizer, self.image_processor = model, tokenizer, image_processor
        self.train_records = dataset.require_split("train")
        self.validation_records = dataset.require_split("validation")
        self.max_length = text_length(model, tokenizer)

    # ------------------------------------------------------------------ TrainingTask

    def trainable_module(self) -> torch.nn.Module:
        return self.model

    def train_dataset(self) -> torch.utils.data.Dataset:
        return ClipImageDataset(self.train_records)

    def pixels(self, images: list) -> torch.Tensor:
        return self.image_processor(images=images, return_tensors="pt")["pixel_values"]  # (B, 3, S, S)

    def tokens(self, captions: list[str]) -> dict[str, torch.Tensor]:
        return clip_tokens(self.tokenizer, captions, self.max_length)  # (B, L) each

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"pixel_values": self.pixels([item["image"] for item in items]),
                "captions": [item["captions"] for item in items]}

    def loss(self, model: torch.nn.Module, batch: dict[str, Any], generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        pixel_values = batch["pixel_values"]
        choice = [int(torch.randint(len(caps), (1,), generator=generator)) for caps in batch["captions"]]
        captions = [caps[i] for caps, i in zip(batch["captions"], choice)]
        tokens = {k: v.to(pixel_values.device) for k, v in self.tokens(captions).items()}
        out = model(pixel_values=pixel_values, **tokens)  # image_embeds, text_embeds: (B, D), L2-normalised
        logit_scale = _unwrap(model).logit_scale
        # With several processes each one contrasts its own batch (open_clip's `local_loss`); gathering
        # embeddings across processes would give more negatives but is not needed at these sizes.
        loss = clip_contrastive_loss(out.image_embeds, out.text_embeds, logit_scale)
        return loss, {"logit_scale": float(logit_scale.detach().clamp(max=LOGIT_SCALE_MAX).exp())}

    def embed_split(self, model, records: list[ImageRecord]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(image_embeds (N_img, D), text_embeds (N_txt, D), text_to_image (N_txt,)) over all captions."""
        images = []
        for record in records:
            with record.open_image() as img:
                images.append(img.convert("RGB"))
        captions = [c for record in records for c in record.captions]
        owners = [i for i, record in enumerate(records) for _ in record.captions]
        model = _unwrap(model)
        return (encode_images(model, self.image_processor, images), encode_texts(model, self.tokenizer, captions),
                torch.tensor(owners))

    def validate(self, model: torch.nn.Module, step: int, out_dir: Path) -> dict[str, float]:
        images, texts, owners = self.embed_split(model, self.validation_records)
        metrics = retrieval_metrics(images, texts, owners)
        payload = {"step": step, "split": "validation", "num_images": int(images.shape[0]),
                   "num_captions": int(texts.shape[0]), **metrics}
        write_json_atomic(Path(out_dir) / METRICS_FILENAME, payload)
        return flatten_metrics(metrics)

    def export(self, model: torch.nn.Module, out_dir: Path) -> None:
        clamp_logit_scale_(model.logit_scale)
        model.save_pretrained(out_dir)  # config.json + model.safetensors
        save_clip_tokenizer(self.tokenizer, out_dir)
        self.image_processor.save_pretrained(out_dir)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The CLIPModel inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)
