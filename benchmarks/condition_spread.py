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
- the same nearest/spread ratio for the emoji without skin-tone siblings and for the others.

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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the prepared emoji dataset")
    parser.add_argument("--clips", nargs="+", required=True, help="CLIP or pipeline folders (what train-unet --clip takes)")
    parser.add_argument("--out", required=True, help="results file (json)")
    args = parser.parse_args(argv)

    from latentdiff.data.prepared import open_prepared

    records = open_prepared(args.data).require_split("train")
    english = [record.captions[record.languages.index("en")] for record in records]
    alone = torch.tensor(without_siblings(english))
    result = {"data": str(Path(args.data).resolve()), "num_without_siblings": int(alone.sum()), "encoders": {}}
    for clip in args.clips:
        row = spread(conditions_of(clip, english), alone)
        result["encoders"][str(Path(clip).resolve())] = row
        print(f"{clip}: effective rank {row['effective_rank']:.1f} of {row['dims']}; singular values "
              f"{row['singular_values'][:10]}; nearest/spread {row['nearest_over_spread']:.3f} (without siblings "
              f"{row['nearest_over_spread_without_siblings']:.3f}, with {row['nearest_over_spread_with_siblings']:.3f}); "
              "whitened " + ", ".join(f"top {k}: {row[f'nearest_over_spread_whitened_top{k}']:.3f}"
                                      for k in WHITENED_DIRECTIONS))
    write_results(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
