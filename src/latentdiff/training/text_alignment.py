"""TextAlignmentTask: a CLIP text encoder that says one image the same way in every language it is captioned in.

Why: the U-Net cross-attends to the text encoder's last hidden states, all `model_max_length` of them
(StableDiffusionPipeline passes no attention mask). Contrastive CLIP training pulls one image's captions in 14
languages together only in the pooled, projected embedding; the hidden states stay 14 different sequences, and
the U-Net has to learn each as its own condition (docs/speedrun/text-encoder.md, "One, six or 14 caption languages":
each language costs passes).

What it trains: a frozen copy of the CLIP (the teacher) gives every training caption's pooled state (the last
hidden state at its first end-of-text token, what CLIP projects). An image's TARGET is the mean of those over its
captions. The text transformer (the student; the vision tower and both projections stay as they are) learns, for
a caption of image e tokenized as the pipeline does (padded to the maximum length, no attention mask):

    positions from the end-of-text token on (they see the whole caption)   -> TARGET[e]
    positions before it (a causal encoder's prefix sees part of the caption) -> the mean of all targets
    the empty prompt (guidance's unconditional input), every position      -> the teacher's own states

so every language of one image gives nearly the same sequence, differing only in how many prefix positions it
has. CLIP's pooled state is then the target, so its projection, and CLIP retrieval, barely move.

Measured before and after (`alignment_metrics.json` in the output folder):
- `agreement`: for each caption in another language, rank the images by the distance from its whole hidden-state
  sequence (L x D) to each image's English caption sequence: top-1/top-5 = its own image is nearest / among the
  5 nearest. What the U-Net sees, compared across languages, on training and on held-out images.
- `retrieval`: CLIP text-to-image recall on the validation split (the same numbers as `train-clip`'s validation).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from latentdiff.checkpoint import write_json_atomic
from latentdiff.data.cache import pipeline_token_ids
from latentdiff.data.prepared import ImageRecord, PreparedDataset, caption_languages, evenly_spaced
from latentdiff.evaluation.retrieval import flatten_metrics, retrieval_metrics
from latentdiff.models.clip import text_tower
from latentdiff.models.tokenizer import save_clip_tokenizer
from latentdiff.training.clip_task import ClipTask

METRICS_FILENAME = "alignment_metrics.json"
REFERENCE_LANGUAGE = "en"  # every other language is compared with an image's caption in this one
ENCODE_BATCH = 256  # captions per forward pass when encoding without gradients


def first_eos(input_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """(N,) position of the first end-of-text token of each row (the pooled position, as CLIPTextTransformer)."""
    return (input_ids == eos_token_id).int().argmax(dim=1)


@torch.no_grad()
def hidden_states(text_model, input_ids: torch.Tensor) -> torch.Tensor:
    """(N, L) ids -> (N, L, D) last hidden states on the model's device, no attention mask (the pipeline's call)."""
    device = next(text_model.parameters()).device
    return torch.cat([text_model(input_ids=input_ids[s:s + ENCODE_BATCH].to(device)).last_hidden_state
                      for s in range(0, len(input_ids), ENCODE_BATCH)])


@torch.no_grad()
def agreement(text_model, tokenizer, records: list[ImageRecord]) -> dict[str, Any]:
    """Per language other than English: how often a caption's whole sequence is nearest (top-1) / among the 5
    nearest (top-5) to its own image's English caption sequence, among the English sequences of all the records
    that have one; with the means over languages. {} when the records have no English captions."""
    english = {i: r.captions[r.languages.index(REFERENCE_LANGUAGE)] for i, r in enumerate(records)
               if REFERENCE_LANGUAGE in r.languages}
    if not english:
        return {}
    row_of = {owner: row for row, owner in enumerate(english)}  # record index -> row of `reference`
    reference = hidden_states(text_model, pipeline_token_ids(tokenizer, list(english.values()))).flatten(1).cpu()
    result: dict[str, Any] = {}
    for language in [language for language in caption_languages(records) if language != REFERENCE_LANGUAGE]:
        pairs = [(row, records[i].captions[records[i].languages.index(language)])
                 for i, row in row_of.items() if language in records[i].languages]
        if not pairs:
            continue
        rows = torch.tensor([row for row, _ in pairs])
        states = hidden_states(text_model, pipeline_token_ids(tokenizer, [c for _, c in pairs])).flatten(1).cpu()
        distances = torch.cdist(states.double(), reference.double())  # (N, E)
        rank = (distances < distances.gather(1, rows[:, None])).sum(dim=1)  # 0 = its own image is nearest
        result[language] = {"top1": float((rank < 1).double().mean()), "top5": float((rank < 5).double().mean()),
                            "num_captions": len(pairs)}
    per_language = list(result.values())
    for k in ("top1", "top5"):
        result[f"mean_{k}"] = sum(v[k] for v in per_language) / max(len(per_language), 1)
    return result


class CaptionDataset(torch.utils.data.Dataset):
    """Item: {"input_ids": (L,) pipeline tokens of one caption, "owner": index of its image}."""

    def __init__(self, input_ids: torch.Tensor, owners: torch.Tensor):
        self.input_ids, self.owners = input_ids, owners

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids[index], "owner": self.owners[index]}


class TextAlignmentTask:
    name = "align-text"

    def __init__(self, teacher, tokenizer, image_processor, dataset: PreparedDataset, num_agreement_images: int,
                 device: torch.device, is_main_process: bool = True):
        """`device`: where the frozen teacher encodes the captions (this process's training device). The teacher is
        needed only here, for the targets and the starting point: the task keeps no reference to it, so a caller
        that drops its own frees it for the whole run."""
        self.tokenizer, self.image_processor = tokenizer, image_processor
        teacher = teacher.eval()
        self.student = copy.deepcopy(teacher)  # in eval mode: its frozen parts never train
        teacher.to(device)
        # Only the text transformer trains: the projections and the vision tower keep CLIP's joint space.
        self.student.requires_grad_(False)
        # The text model as the CLIPModel holds it (transformers 5: a CLIPTextModel, whose gradient checkpointing
        # switch `--gradient-checkpointing` uses); its forward is the text transformer's.
        self.student_text = self.student.text_model.requires_grad_(True)
        self.train_records = dataset.require_split("train")
        self.validation_records = dataset.require_split("validation")
        self.test_records = dataset.records("test")  # held-out images: captions the alignment never sees
        self.agreement_records = evenly_spaced(self.train_records, num_agreement_images)
        self.clip_task = ClipTask(self.student, tokenizer, image_processor, dataset)  # retrieval, as train-clip
        self.input_ids, self.owners, self.targets, self.empty_target = self._targets(teacher)
        self.prefix_target = self.targets.mean(dim=0)  # (D,)
        self.empty_ids = pipeline_token_ids(tokenizer, [""])  # (1, L)
        # The spread of the targets: a loss of this size means the student says nothing about which image it is.
        self.target_variance = float((self.targets - self.prefix_target).pow(2).mean())
        self.last_relative_loss: float | None = None  # of the last training step, for the metrics file
        self.device_targets: dict[str, torch.Tensor] = {}  # the targets on the training device, moved once
        # Only the main process validates, so only it measures the starting point.
        self.before = self.measure(teacher) if is_main_process else None

    @torch.no_grad()
    def _targets(self, teacher) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input ids (N, L), owner (N,), per-image target (E, D), the empty prompt's teacher states (L, D))."""
        teacher_text = text_tower(teacher.text_model)
        captions = [c for record in self.train_records for c in record.captions]
        owners = torch.tensor([i for i, record in enumerate(self.train_records) for _ in record.captions])
        ids = pipeline_token_ids(self.tokenizer, captions)
        eos = first_eos(ids, self.tokenizer.eos_token_id)
        pooled = hidden_states(teacher_text, ids).cpu()[torch.arange(len(ids)), eos]  # (N, D)
        targets = torch.zeros(len(self.train_records), pooled.shape[1]).index_add_(0, owners, pooled)
        targets /= torch.bincount(owners, minlength=len(self.train_records))[:, None].float()  # mean over captions
        empty = hidden_states(teacher_text, pipeline_token_ids(self.tokenizer, [""]))[0].cpu()  # (L, D)
        return ids, owners, targets, empty

    def measure(self, model) -> dict[str, Any]:
        """Agreement on the training (and held-out) images and CLIP retrieval on the validation split."""
        text_model = text_tower(model.text_model)
        result = {"agreement_train": agreement(text_model, self.tokenizer, self.agreement_records)}
        if self.test_records:
            result["agreement_test"] = agreement(text_model, self.tokenizer, self.test_records)
        recall = retrieval_metrics(*self.clip_task.embed_split(model, self.validation_records))
        result["retrieval_validation"] = {k: v for k, v in flatten_metrics(recall).items()
                                          if k.startswith("text_to_image")}
        return result

    # ------------------------------------------------------------------ TrainingTask

    def trainable_module(self) -> torch.nn.Module:
        return self.student_text

    def train_dataset(self) -> torch.utils.data.Dataset:
        return CaptionDataset(self.input_ids, self.owners)

    def collate(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.stack([item["input_ids"] for item in items]),
                "owner": torch.stack([item["owner"] for item in items])}

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], generator: torch.Generator):
        """Mean squared error to the targets above, per element; the empty prompt weighs as one caption."""
        ids, owners = batch["input_ids"], batch["owner"]  # (B, L), (B,)
        if not self.device_targets:
            self.device_targets = {name: getattr(self, name).to(ids.device)
                                   for name in ("targets", "prefix_target", "empty_target", "empty_ids")}
        on_device = self.device_targets
        states = model(input_ids=torch.cat([ids, on_device["empty_ids"]])).last_hidden_state  # (B + 1, L, D)
        caption_states, empty_states = states[:-1], states[-1]
        positions = torch.arange(ids.shape[1], device=ids.device)[None, :]  # (1, L)
        after_eos = (positions >= first_eos(ids, self.tokenizer.eos_token_id)[:, None])[..., None]  # (B, L, 1)
        wanted = torch.where(after_eos, on_device["targets"][owners][:, None, :],
                             on_device["prefix_target"][None, None, :])  # (B, L, D)
        squared = torch.cat([(caption_states - wanted).pow(2), (empty_states - on_device["empty_target"]).pow(2)[None]])
        loss = squared.float().mean()
        self.last_relative_loss = float(loss.detach()) / self.target_variance
        return loss, {"relative_loss": self.last_relative_loss}

    def validate(self, model: torch.nn.Module, step: int, out_dir: Path) -> dict[str, float]:
        # `model` is the student's text model, inside self.student; the rest of it (the vision tower, for retrieval)
        # joins it on the training device
        after = self.measure(self.student.to(next(model.parameters()).device))
        # The loss's scale is the targets' spread: a relative loss of 1 would mean the encoder no longer tells the
        # images apart. None when this process has not trained a step (a rerun that only exports).
        write_json_atomic(Path(out_dir) / METRICS_FILENAME,
                          {"step": step, "num_captions": len(self.input_ids),
                           "final_relative_loss": self.last_relative_loss, "before": self.before, "after": after})
        metrics = {f"{key}/mean_{k}": value[f"mean_{k}"] for key, value in after.items()
                   if key.startswith("agreement") and value for k in ("top1", "top5")}
        return {**metrics, **after["retrieval_validation"]}

    def export(self, model: torch.nn.Module, out_dir: Path) -> None:
        """A CLIPModel folder: the teacher's vision tower and projections, the aligned text transformer."""
        if model is not self.student_text:  # a copy (a wrapper unwrapped elsewhere): take its weights
            self.student_text.load_state_dict(model.state_dict())
        self.student.save_pretrained(out_dir)
        save_clip_tokenizer(self.tokenizer, out_dir)
        self.image_processor.save_pretrained(out_dir)
