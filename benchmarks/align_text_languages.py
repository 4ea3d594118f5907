"""`latentdiff align-text` with the flags the recipe's records were made with, writing its before/after numbers to a
results file beside the other benchmarks'.

    python benchmarks/align_text_languages.py --clip CLIP_DIR --data EMOJI_DATA --out OUT_CLIP_DIR [--epochs 20]

The alignment itself (what it trains, and what `agreement` and `retrieval` measure) is the `latentdiff align-text`
stage: latentdiff.training.text_alignment. The records of docs/speedrun/text-encoder.md ("One emoji, one condition"
and after) were made by this script before it was that stage: the same targets, loss, optimizer and schedule, the captions in
another order (the loop's seeded sampler instead of one permutation per epoch).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from results_file import write_results

from latentdiff.stages import align_text

RESULTS = Path(__file__).resolve().parent / "results" / "align_text_languages.json"


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
    out = Path(args.out)
    status = align_text.main(["--clip", args.clip, "--data", args.data, "--out", args.out, "--epochs", str(args.epochs),
                              "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--seed", str(args.seed),
                              "--num-agreement-images", str(args.num_train_emoji)])
    if status:
        return status
    from latentdiff.training.text_alignment import METRICS_FILENAME

    measured = json.loads((out / METRICS_FILENAME).read_text(encoding="utf-8"))
    write_results({"clip": args.clip, "data": args.data, "out": str(out), "epochs": args.epochs,
                   "batch_size": args.batch_size, "lr": args.lr, **measured}, args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
