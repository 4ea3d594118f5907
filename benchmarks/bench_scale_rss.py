"""Peak RSS of `prepare-data --format webdataset` and of building train-unet's per-shard cache, at two
dataset sizes (default 5,000 and 50,000 `shapes` images): the numbers must stay flat as data grows.

    nice -n 15 OMP_NUM_THREADS=1 python benchmarks/bench_scale_rss.py [--sizes 5000 50000] [--image-size 32]

Each measurement runs in a fresh child process that reports its own peak resident set size
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`), so imports and earlier steps do not leak between numbers.
The cache is built with randomly initialised `tiny` VAE and CLIP text encoder (the cost of encoding does
not depend on the weights). For comparison the one-file cache (`latentdiff.data.cache`, the imagefolder
path) is measured on the same images when `--one-file-cache` is given. Writes
benchmarks/results/scale_rss.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from results_file import write_results  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def child_prepare(out: str, num_images: int, image_size: int) -> dict:
    from latentdiff.stages import prepare_data

    prepare_data.main(["shapes", "--num-images", str(num_images), "--image-size", str(image_size), "--out", out,
                       "--format", "webdataset"])
    return {}


def _tiny_encoders(data: str):
    import torch

    from latentdiff.presets import CLIP_PRESETS, VAE_PRESETS
    from latentdiff.data.prepared import open_prepared
    from latentdiff.models.clip import build_clip
    from latentdiff.models.tokenizer import train_clip_tokenizer
    from latentdiff.models.vae import vae_from_preset
    from latentdiff.stages.train_unet import load_text_encoder

    torch.manual_seed(0)
    dataset = open_prepared(data)
    captions = [c for r in dataset.records("validation") for c in r.captions]  # a vocabulary; the size is what counts
    preset = CLIP_PRESETS["tiny"]
    tokenizer = train_clip_tokenizer(captions, preset.vocab_size, preset.max_text_tokens)
    clip_dir = Path(data).parent / "clip"
    from latentdiff.models.tokenizer import save_clip_tokenizer

    build_clip(preset, tokenizer).save_pretrained(clip_dir)
    save_clip_tokenizer(tokenizer, clip_dir)
    text_encoder, tokenizer = load_text_encoder(clip_dir)
    return dataset, vae_from_preset(VAE_PRESETS["tiny"]).eval(), text_encoder.eval(), tokenizer


def child_cache(data: str, cache_dir: str, one_file: bool) -> dict:
    from latentdiff.data.cache import load_or_build
    from latentdiff.data.shard_cache import load_or_build_sharded

    dataset, vae, text_encoder, tokenizer = _tiny_encoders(data)
    before = peak_rss_mib()
    build = load_or_build if one_file else load_or_build_sharded
    cache = build(vae, text_encoder, tokenizer, dataset, "train", cache_dir)
    if not one_file:  # read every item once, as an epoch does
        for i in range(0, len(cache)):
            cache[i]
    return {"rss_before_build_mib": round(before, 1), "items": len(cache)}


def run_child(*args: str) -> dict:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    report = json.loads(result.stdout.strip().splitlines()[-1])
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000])
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--one-file-cache", action="store_true", help="also measure the one-file cache")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        report = (child_prepare(rest[0], int(rest[1]), int(rest[2])) if kind == "prepare"
                  else child_cache(rest[0], rest[1], kind == "cache-one-file"))
        print(json.dumps({**report, "peak_rss_mib": round(peak_rss_mib(), 1)}))
        return

    rows = []
    with tempfile.TemporaryDirectory(prefix="latentdiff-rss-") as tmp:
        for size in args.sizes:
            data = str(Path(tmp) / f"shapes-{size}" / "data")
            row = {"images": size, "image_size": args.image_size,
                   "prepare_data": run_child("prepare", data, str(size), str(args.image_size)),
                   "sharded_cache": run_child("cache-sharded", data, str(Path(tmp) / f"cache-{size}"))}
            if args.one_file_cache:
                row["one_file_cache"] = run_child("cache-one-file", data, str(Path(tmp) / f"cache1-{size}"))
            rows.append(row)
            print(json.dumps(row), flush=True)
    load = os.getloadavg()
    for row in rows:
        row["load_average_1m"] = round(load[0], 2)
    out = HERE / "results" / "scale_rss.json"
    # Sizes measured by separate runs are kept side by side (a run replaces only the sizes it measured).
    earlier = json.loads(out.read_text())["rows"] if out.exists() else []
    measured = {(r["images"], r["image_size"]) for r in rows}
    rows = sorted([r for r in earlier if (r["images"], r["image_size"]) not in measured] + rows,
                  key=lambda r: (r["image_size"], r["images"]))
    results = {"benchmark": "scale_rss", "rows": rows,
               "note": "peak RSS of a fresh child process per measurement (ru_maxrss); tiny random VAE + CLIP"}
    write_results(results, out)
    print(f"load average {load[0]:.2f}")


if __name__ == "__main__":
    main()
