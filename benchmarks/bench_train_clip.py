"""Training speed of the CLIP presets: parameters and samples/s of one optimizer step (forward, symmetric
contrastive loss, backward, AdamW), fp32, on random 64-token captions and random images.

    .venv/bin/python benchmarks/bench_train_clip.py [--presets tiny,small] [--batch-size 32] [--steps 5]

Prints one line per preset and writes benchmarks/results/train_clip.json. Timings share the machine
with whatever else runs: the load average is recorded next to them.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import string
import time
from pathlib import Path

import torch

from latentdiff.presets import CLIP_PRESETS
from latentdiff.losses.contrastive import clip_contrastive_loss
from latentdiff.models.clip import build_clip
from latentdiff.models.tokenizer import train_clip_tokenizer
from results_file import write_results

RESULTS = Path(__file__).resolve().parent / "results" / "train_clip.json"


def measure(name: str, batch_size: int, steps: int) -> dict:
    preset = CLIP_PRESETS[name]
    # Enough distinct letter-only words for the BPE to fill the preset's vocabulary (digits are never merged).
    rng = random.Random(0)
    words = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 9))) for _ in range(20000)]
    tokenizer = train_clip_tokenizer([" ".join(words[i:i + 12]) for i in range(0, len(words), 3)],
                                     preset.vocab_size, preset.max_text_tokens)
    torch.manual_seed(0)
    model = build_clip(preset, tokenizer).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    pixels = torch.randn(batch_size, 3, preset.image_size, preset.image_size)
    tokens = tokenizer([" ".join(words[i:i + 40]) for i in range(batch_size)], padding="max_length",
                       truncation=True, max_length=preset.max_text_tokens, return_tensors="pt")
    times = []
    for step in range(steps + 1):  # the first step warms up allocators and is not counted
        start = time.perf_counter()
        out = model(pixel_values=pixels, input_ids=tokens.input_ids, attention_mask=tokens.attention_mask)
        clip_contrastive_loss(out.image_embeds, out.text_embeds, model.logit_scale).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step:
            times.append(time.perf_counter() - start)
    seconds = sorted(times)[len(times) // 2]
    return {"preset": name, "params_millions": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
            "vocab_size": len(tokenizer), "batch_size": batch_size, "samples_per_s": round(batch_size / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny,small")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for name in args.presets.split(","):
        row = measure(name, args.batch_size, args.steps)
        print(f"{row['preset']:>6}: {row['params_millions']}M params, {row['samples_per_s']} samples/s "
              f"(batch {row['batch_size']}, fp32, {torch.get_num_threads()} threads)", flush=True)
        rows.append(row)
    write_results({"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                   "load_average_1min": os.getloadavg()[0], "results": rows}, RESULTS)


if __name__ == "__main__":
    main()
