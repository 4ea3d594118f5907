"""A text encoder that says one emoji the same way in every language it was captioned in.

    python benchmarks/align_text_languages.py --clip CLIP_DIR --data EMOJI_DATA --out OUT_CLIP_DIR [--epochs 20]

Why: the U-Net cross-attends to the text encoder's last hidden states, all `model_max_length` of them
(StableDiffusionPipeline passes no attention mask). The bundled CLIP pulls the 14 captions of one emoji together
only in its pooled, projected embedding; the hidden states stay 14 different sequences, and the U-Net has to learn
each as its own condition (docs/speedrun.md, "One, six or 14 caption languages": each language costs passes).

What it does: a frozen copy of the CLIP (the teacher) gives every training caption's pooled state (the last hidden
state at its first end-of-text token, what CLIP projects). The emoji's TARGET is the mean of those over its
captions. The text tower (the student; the vision tower and both projections stay as they are) is trained so that
for a caption of emoji e, tokenized as the pipeline does (padded to the maximum length, no attention mask):

    positions from the end-of-text token on (they see the whole caption)   -> TARGET[e]
    positions before it (a causal encoder's prefix sees part of the caption) -> the mean of all targets
    the empty prompt (guidance's unconditional input), every position      -> the teacher's own states

so every language of one emoji gives nearly the same sequence, differing only in how many prefix positions it has.
CLIP's pooled state is then the target, so its projection, and CLIP retrieval, barely move (measured below).

Measured before and after (written to benchmarks/results/align_text_languages.json):
- `agreement`: for each caption in another language, rank the split's emoji by the distance from its whole
  hidden-state sequence (L x D) to each emoji's English caption sequence: top-1/top-5 = the own emoji is nearest /
  among the 5 nearest. What the U-Net sees, compared across languages, on training and on held-out emoji.
- `retrieval`: CLIP text-to-image recall on the validation split (the same numbers as `train-clip`'s validation).
The output is a CLIP folder (the teacher's vision tower, the new text tower): pass it to `train-unet --clip`.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path

import torch
from diffusers.optimization import get_scheduler
from tqdm import tqdm

from results_file import write_results

from latentdiff.checkpoint import is_stage_complete, mark_stage_complete
from latentdiff.data.cache import pipeline_token_ids
from latentdiff.data.prepared import open_prepared
from latentdiff.evaluation.retrieval import flatten_metrics, retrieval_metrics
from latentdiff.models.clip import load_clip, text_tower
from latentdiff.models.tokenizer import save_clip_tokenizer
from latentdiff.training.clip_task import ClipTask

RESULTS = Path(__file__).resolve().parent / "results" / "align_text_languages.json"
AGREEMENT_LANGUAGES = ("fr", "es", "de", "zh", "ja")  # compared with each emoji's English caption
ENCODE_BATCH = 256  # captions per forward pass


def first_eos(input_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """(N,) position of the first end-of-text token of each row (the pooled position, as CLIPTextTransformer)."""
    return (input_ids == eos_token_id).int().argmax(dim=1)


@torch.no_grad()
def hidden_states(text_model, input_ids: torch.Tensor) -> torch.Tensor:
    """(N, L) ids -> (N, L, D) last hidden states on the model's device, no attention mask (the pipeline's call)."""
    device = next(text_model.parameters()).device
    return torch.cat([text_model(input_ids=input_ids[s:s + ENCODE_BATCH].to(device)).last_hidden_state
                      for s in range(0, len(input_ids), ENCODE_BATCH)])


def caption_table(records) -> tuple[list[str], torch.Tensor]:
    """Every caption of every record: (captions, owner index (N,))."""
    captions = [c for record in records for c in record.captions]
    return captions, torch.tensor([i for i, record in enumerate(records) for _ in record.captions])


@torch.no_grad()
def agreement(text_model, tokenizer, records) -> dict[str, dict[str, float]]:
    """Per language: how often a caption's whole sequence is nearest (top-1) / among the 5 nearest (top-5) to its
    own emoji's English caption sequence, among the English sequences of all the records that have one."""
    english = {i: r.captions[r.languages.index("en")] for i, r in enumerate(records) if "en" in r.languages}
    row_of = {owner: row for row, owner in enumerate(english)}  # record index -> row of `reference`
    english_ids = pipeline_token_ids(tokenizer, list(english.values()))
    reference = hidden_states(text_model, english_ids).flatten(1).cpu()  # (E, L*D)
    result = {}
    for language in AGREEMENT_LANGUAGES:
        pairs = [(row, records[i].captions[records[i].languages.index(language)])
                 for i, row in row_of.items() if language in records[i].languages]
        if not pairs:
            continue
        rows = torch.tensor([row for row, _ in pairs])
        states = hidden_states(text_model, pipeline_token_ids(tokenizer, [c for _, c in pairs])).flatten(1).cpu()
        distances = torch.cdist(states.double(), reference.double())  # (N, E)
        own = distances.gather(1, rows[:, None])
        rank = (distances < own).sum(dim=1)  # 0 = the own emoji is nearest
        result[language] = {"top1": float((rank < 1).double().mean()), "top5": float((rank < 5).double().mean()),
                            "num_captions": len(pairs)}
    languages = list(result.values())
    for k in ("top1", "top5"):
        result[f"mean_{k}"] = sum(v[k] for v in languages) / max(len(languages), 1)
    return result


@torch.no_grad()
def retrieval(model, tokenizer, processor, dataset) -> dict[str, float]:
    """CLIP text-to-image recall on the validation split, computed as `train-clip` validates."""
    task = ClipTask(model, tokenizer, processor, dataset)
    metrics = retrieval_metrics(*task.embed_split(model, dataset.require_split("validation")))
    return {k: v for k, v in flatten_metrics(metrics).items() if k.startswith("text_to_image")}


def measure(model, tokenizer, processor, dataset, num_train_emoji: int) -> dict:
    train = dataset.require_split("train")
    spread = train[:: max(1, len(train) // num_train_emoji)][:num_train_emoji]  # spread over the split
    text_model = text_tower(model.text_model)
    result = {"agreement_train": agreement(text_model, tokenizer, spread),
              "retrieval_validation": retrieval(model, tokenizer, processor, dataset)}
    if dataset.records("test"):  # held-out emoji: captions the alignment never saw
        result["agreement_test"] = agreement(text_model, tokenizer, dataset.records("test"))
    return result


def summary(measured: dict) -> str:
    parts = [f"agreement {key.split('_')[1]} top-1 {value['mean_top1']:.3f} top-5 {value['mean_top5']:.3f}"
             for key, value in measured.items() if key.startswith("agreement")]
    recall = measured["retrieval_validation"]
    return (", ".join(parts) + f"; CLIP text-to-image R@1 {recall['text_to_image/R@1']:.3f} "
            f"R@5 {recall['text_to_image/R@5']:.3f}")


def targets(teacher_text, tokenizer, records) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input ids (N, L), owner (N,), per-emoji target (E, D), the empty prompt's teacher states (L, D)), all on
    the teacher's device."""
    device = next(teacher_text.parameters()).device
    captions, owners = caption_table(records)
    ids, owners = pipeline_token_ids(tokenizer, captions).to(device), owners.to(device)
    eos = first_eos(ids, tokenizer.eos_token_id)
    with torch.no_grad():
        pooled = hidden_states(teacher_text, ids)[torch.arange(len(ids), device=device), eos]  # (N, D)
        target = torch.zeros(len(records), pooled.shape[1], device=device).index_add_(0, owners, pooled)
        target /= torch.bincount(owners, minlength=len(records))[:, None].float()  # (E, D): mean over captions
        empty = hidden_states(teacher_text, pipeline_token_ids(tokenizer, [""]))[0]  # (L, D)
    return ids, owners, target, empty


def alignment_loss(student_text, ids, owners, target, prefix_target, empty_ids, empty_target, eos_token_id):
    """Mean squared error to the targets above, per element; the empty prompt weighs as one caption."""
    states = student_text(input_ids=torch.cat([ids, empty_ids])).last_hidden_state  # (B + 1, L, D)
    caption_states, empty_states = states[:-1], states[-1]
    positions = torch.arange(ids.shape[1], device=ids.device)[None, :]  # (1, L)
    after_eos = (positions >= first_eos(ids, eos_token_id)[:, None])[..., None]  # (B, L, 1)
    wanted = torch.where(after_eos, target[owners][:, None, :], prefix_target[None, None, :])  # (B, L, D)
    squared = torch.cat([(caption_states - wanted).pow(2), (empty_states - empty_target).pow(2)[None]])
    return squared.mean()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", required=True, help="the CLIP folder to start from (train-clip's output)")
    parser.add_argument("--data", required=True, help="a prepared emoji dataset with several caption languages")
    parser.add_argument("--out", required=True, help="the new CLIP folder")
    parser.add_argument("--epochs", type=int, default=20, help="passes over every training caption")
    parser.add_argument("--batch-size", type=int, default=256, help="captions per step")
    parser.add_argument("--lr", type=float, default=5e-4, help="peak AdamW learning rate (cosine to 0)")
    parser.add_argument("--num-train-emoji", type=int, default=500, help="training emoji in the agreement measure")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1:
        parser.error("--epochs and --batch-size must be at least 1")
    out = Path(args.out)
    if is_stage_complete(out):  # as a finished training stage: a rerun of a chain (runs/default.sh) goes on past it
        print(f"{out} already holds a finished alignment; skipping it (delete the folder to align again)")
        return 0

    torch.manual_seed(args.seed)
    dataset = open_prepared(args.data)
    teacher, tokenizer, processor = load_clip(args.clip)
    teacher.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    student = copy.deepcopy(teacher)
    teacher_text, student_text = text_tower(teacher.text_model), text_tower(student.text_model)

    before = measure(teacher, tokenizer, processor, dataset, args.num_train_emoji)
    print(f"before: {summary(before)}")

    ids, owners, target, empty = targets(teacher_text, tokenizer, dataset.require_split("train"))
    prefix_target = target.mean(dim=0)  # (D,)
    empty_ids = pipeline_token_ids(tokenizer, [""]).to(ids.device)
    # Only the text transformer trains: the projections and the vision tower keep CLIP's joint space.
    for p in student.parameters():
        p.requires_grad_(False)
    for p in student_text.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(student_text.parameters(), lr=args.lr, weight_decay=0.0)
    steps_per_epoch = math.ceil(len(ids) / args.batch_size)
    total = steps_per_epoch * args.epochs
    schedule = get_scheduler("cosine", optimizer, num_warmup_steps=0, num_training_steps=total)
    # The spread of the targets: a loss of this size means the student says nothing about which emoji it is.
    target_variance = float((target - prefix_target).pow(2).mean())
    student_text.train()
    started = time.perf_counter()
    progress = tqdm(total=total, desc="align text", unit="step", file=sys.stderr)
    for _ in range(args.epochs):
        for batch in torch.randperm(len(ids), device=ids.device).split(args.batch_size):
            loss = alignment_loss(student_text, ids[batch], owners[batch], target, prefix_target, empty_ids, empty,
                                  tokenizer.eos_token_id)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            progress.update(1)
            relative_loss = float(loss.detach()) / target_variance
            progress.set_postfix(relative_loss=f"{relative_loss:.4f}")
    progress.close()
    train_s = time.perf_counter() - started
    student.eval()

    after = measure(student, tokenizer, processor, dataset, args.num_train_emoji)
    print(f"after: {summary(after)}")
    student.save_pretrained(out)
    save_clip_tokenizer(tokenizer, out)
    processor.save_pretrained(out)
    results = {"clip": args.clip, "data": args.data, "out": str(out), "epochs": args.epochs,
               "batch_size": args.batch_size, "lr": args.lr, "num_captions": len(ids), "train_s": round(train_s, 1),
               "final_relative_loss": relative_loss, "before": before, "after": after}
    write_results(results, args.results)
    mark_stage_complete(out, {k: results[k] for k in ("clip", "data", "epochs", "lr", "train_s")})  # last: all written
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
