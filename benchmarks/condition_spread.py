"""How far apart the U-Net's conditions are: each training emoji's English name through a CLIP's text encoder, as
the pipeline encodes a prompt, and the output at the last position (after `latentdiff align-text` every position
from the end-of-text token on carries the caption's target and the positions before it a constant, so this one
vector is the whole condition the U-Net can tell emoji apart by).

Printed and written per CLIP folder:
- the singular values of the (N emoji, D) conditions around their mean, and the effective rank (exp of the
  entropy of their normalised squares): how many directions the conditions really use;
- `nearest_over_spread`: the median distance from an emoji's condition to the nearest other's, over the mean
  distance to the centre; the same after whitening the top k principal directions (each scaled to unit variance),
  what a U-Net's first linear layer would see if the encoder gave its conditions evenly spread;
- the same nearest/spread ratio for the emoji without skin-tone siblings and for the others;
- per other language (`--languages`): how often an emoji's caption in it has its own emoji's English condition as
  the nearest (top-1) or among the 5 nearest (top-5) of all the English conditions, for all emoji and for those
  without siblings: how well the encoder's alignment makes one condition of an emoji's captions. (Not a cap on
  what a U-Net draws from a training caption, since it trains on every language's condition, but each language
  that differs from English is one more condition per emoji to learn.)

    python benchmarks/condition_spread.py --data runs/speedrun/emoji --clips src/latentdiff/default_model/clip CLIP_B \
        --out benchmarks/results/condition-spread.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from multilingual_agreement import without_siblings
from results_file import write_results

WHITENED_DIRECTIONS = (8, 20, 40)
SHOWN_SINGULAR_VALUES = 16


def conditions_of(clip: str, names: list[str]) -> torch.Tensor:
    """(len(names), D) each name's condition: the text encoder output at the pipeline's last position, the encoder
    loaded as `train-unet --clip` loads it (a CLIP folder or a pipeline folder)."""
    from latentdiff.data.cache import encode_prompts
    from latentdiff.stages.train_unet import load_text_encoder

    text_encoder, tokenizer = load_text_encoder(Path(clip))
    text_encoder.eval()
    return torch.cat([encode_prompts(text_encoder, tokenizer, names[s:s + 256])[:, -1] for s in range(0, len(names), 256)])


def nearest_over_spread(conditions: torch.Tensor, rows: torch.Tensor | None = None) -> float:
    """Median over `rows` (default: all) of the distance to the nearest other condition, over the mean distance of
    all conditions to their centre. conditions: (N, D), centred."""
    distances = torch.cdist(conditions, conditions)
    distances.fill_diagonal_(float("inf"))
    nearest = distances.min(dim=1).values
    if rows is not None:
        nearest = nearest[rows]
    return float(nearest.median() / conditions.norm(dim=1).mean())


def spread(conditions: torch.Tensor, alone: torch.Tensor) -> dict:
    """The numbers of the module docstring for one encoder's (N, D) conditions; alone: (N,) bool."""
    centred = (conditions - conditions.mean(dim=0)).double()
    _, singular, directions = torch.linalg.svd(centred, full_matrices=False)
    share = singular ** 2 / (singular ** 2).sum()
    result = {
        "num_emoji": len(conditions), "dims": conditions.shape[1],
        "singular_values": [round(float(s), 1) for s in singular[:SHOWN_SINGULAR_VALUES]],
        "effective_rank": float(torch.exp(-(share * torch.log(share.clamp_min(1e-30))).sum())),
        "nearest_over_spread": nearest_over_spread(centred),
        "nearest_over_spread_without_siblings": nearest_over_spread(centred, alone),
        "nearest_over_spread_with_siblings": nearest_over_spread(centred, ~alone),
    }
    rank = int((singular > singular[0] * 1e-6).sum())  # directions with any variance: only those can be scaled up
    for k in WHITENED_DIRECTIONS:
        used = min(k, rank)
        whitened = centred @ (directions[:used].T / (singular[:used] / len(centred) ** 0.5))  # (N, used), unit variance
        result[f"nearest_over_spread_whitened_top{k}"] = nearest_over_spread(whitened)
    return result


def language_agreement(english: torch.Tensor, other: torch.Tensor, owners: torch.Tensor,
                       alone: torch.Tensor) -> dict:
    """english: (N, D) each emoji's English condition; other: (M, D) captions in one other language of the emoji
    `owners` (M,) (rows of `english`); alone: (N,) bool. Top-1/top-5 of its own emoji's English condition among all
    N by distance, over the M captions and over those of emoji without siblings."""
    distances = torch.cdist(other.double(), english.double())  # (M, N)
    rank = (distances < distances.gather(1, owners[:, None])).sum(dim=1)  # (M,) how many English are nearer
    mine = alone[owners]
    return {"num_captions": len(owners), "top1": float((rank < 1).double().mean()),
            "top5": float((rank < 5).double().mean()),
            "top1_without_siblings": float((rank[mine] < 1).double().mean()),
            "top5_without_siblings": float((rank[mine] < 5).double().mean())}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the prepared emoji dataset")
    parser.add_argument("--clips", nargs="+", required=True, help="CLIP or pipeline folders (what train-unet --clip takes)")
    parser.add_argument("--languages", nargs="*", default=["fr", "es", "de", "zh", "ja"],
                        help="other caption languages to compare with English (none: skip)")
    parser.add_argument("--out", required=True, help="results file (json)")
    args = parser.parse_args(argv)

    from latentdiff.data.prepared import open_prepared

    records = open_prepared(args.data).require_split("train")
    english = [record.captions[record.languages.index("en")] for record in records]
    alone = torch.tensor(without_siblings(english))
    result = {"data": str(Path(args.data).resolve()), "num_without_siblings": int(alone.sum()), "encoders": {}}
    for clip in args.clips:
        english_conditions = conditions_of(clip, english)
        row = spread(english_conditions, alone)
        row["languages"] = {}
        for language in args.languages:
            owners = [i for i, record in enumerate(records) if language in record.languages]
            if not owners:
                print(f"  {language}: no training caption in this language; skipped")
                continue
            captions = [records[i].captions[records[i].languages.index(language)] for i in owners]
            row["languages"][language] = language_agreement(english_conditions, conditions_of(clip, captions),
                                                            torch.tensor(owners), alone)
        result["encoders"][str(Path(clip).resolve())] = row
        print(f"{clip}: effective rank {row['effective_rank']:.1f} of {row['dims']}; singular values "
              f"{row['singular_values'][:10]}; nearest/spread {row['nearest_over_spread']:.3f} (without siblings "
              f"{row['nearest_over_spread_without_siblings']:.3f}, with {row['nearest_over_spread_with_siblings']:.3f}); "
              "whitened " + ", ".join(f"top {k}: {row[f'nearest_over_spread_whitened_top{k}']:.3f}"
                                      for k in WHITENED_DIRECTIONS))
        for language, agreement in row["languages"].items():
            print(f"  {language}: its own emoji's English condition nearest {agreement['top1']:.3f}, among the 5 "
                  f"nearest {agreement['top5']:.3f} (without siblings {agreement['top1_without_siblings']:.3f} / "
                  f"{agreement['top5_without_siblings']:.3f})")
    write_results(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
