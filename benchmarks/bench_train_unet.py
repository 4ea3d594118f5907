"""train-unet throughput for the `small` presets, with and without the latent/text caches, in one run.

    python benchmarks/bench_train_unet.py [--seconds 25] [--batch-size 32] [--threads N] [--compile] [--bf16]
                                          [--train-text-encoder]

Builds random-weight `small` CLIP and VAE folders and a 64 px dataset of coloured shapes in a temporary
folder, then times the real training step of `DiffusionTask` (collate -> loss -> backward -> AdamW step)
in two modes:
  cached:   latents and text embeddings read from the on-disk cache (`latentdiff.data.cache`)
  no-cache: every step encodes the images with the VAE and the captions with the CLIP text encoder
and, with --compile, a third:
  compiled: cached, with the U-Net compiled as `train-unet --compile` does (`nn.Module.compile()`); the
            compile time is its setup time, so the steps/s compare with the cached mode's in the same run
and, with --bf16, another:
  bf16:     cached, the forward pass under bf16 autocast, as `train-unet --mixed-precision bf16` runs it
            (accelerate's autocast; the weights, gradients and AdamW stay fp32). Worth it only on CPUs with
            native bf16 arithmetic (AVX-512 BF16 or AMX), and only if the tensors are big enough to gain
            more than the casts cost
and, with --train-text-encoder, another:
  text-encoder: cached latents, the captions' token ids encoded every step by the text encoder that trains
            with the U-Net, as `train-unet --train-text-encoder` runs it
Prints samples/s for each (and the one-off cache build time) and writes benchmarks/results/train_unet.json (or --out).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tiny-dataset and component builders live with the tests

from results_file import write_results  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "train_unet.json"


def build_inputs(root: Path, num_images: int):
    from helpers.clip_data import write_tiny_clip_dataset
    from helpers.unet_components import IMAGE_SIZE, write_tiny_clip

    from latentdiff.presets import VAE_PRESETS
    from latentdiff.models.vae import vae_from_preset

    data = write_tiny_clip_dataset(root / "data", num_train=num_images, num_validation=8, image_size=IMAGE_SIZE)
    captions = [f"a {c} {s}" for c in ("red", "green", "blue", "yellow") for s in ("square", "circle")]
    clip = write_tiny_clip(root / "clip", captions, preset="small")
    vae_from_preset(VAE_PRESETS["small"]).save_pretrained(root / "vae", safe_serialization=True)
    return data, clip, root / "vae"


def time_mode(cfg, seconds: float) -> dict:
    import contextlib

    import torch

    from latentdiff.stages.train_unet import build_components
    from latentdiff.training.diffusion_task import DiffusionTask
    from latentdiff.training.gpu_options import apply_training_options

    dataset, unet, vae, text_encoder, tokenizer = build_components(cfg)
    started = time.perf_counter()
    task = DiffusionTask(cfg, dataset, unet, vae, text_encoder, tokenizer)
    setup_s = time.perf_counter() - started  # the cache build (cached mode), ~0 otherwise
    model = task.trainable_module().train()
    apply_training_options(model, gradient_checkpointing=False, compile=cfg.compile)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    items = task.train_dataset()
    generator = torch.Generator().manual_seed(0)
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if cfg.mixed_precision == "bf16"
                else contextlib.nullcontext())

    def step(i: int) -> None:
        start = (i * cfg.batch_size) % max(1, len(items) - cfg.batch_size)
        batch = task.collate([items[j] for j in range(start, start + cfg.batch_size)])
        with autocast:
            loss, _ = task.loss(model, batch, generator)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    started = time.perf_counter()
    step(0)  # warm-up: allocations, lazy moves (and the compilation, with --compile)
    if cfg.compile:
        setup_s = time.perf_counter() - started
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or steps < 2:
        step(steps + 1)
        steps += 1
    elapsed = time.perf_counter() - started
    return {"samples_per_s": steps * cfg.batch_size / elapsed, "steps": steps, "seconds": elapsed,
            "setup_seconds": setup_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=25.0, help="timed seconds per mode")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-images", type=int, default=128, help="training images of the synthetic dataset")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", default=str(RESULTS), help="results file (one per variant keeps each measurement)")
    parser.add_argument("--compile", action="store_true", help="also time the cached mode with the U-Net compiled")
    parser.add_argument("--bf16", action="store_true", help="also time the cached mode under bf16 autocast")
    parser.add_argument("--train-text-encoder", action="store_true",
                        help="also time the cached mode with the text encoder trained alongside")
    args = parser.parse_args()

    import torch

    from latentdiff.config import UnetTrainConfig
    from latentdiff.presets import UNET_PRESETS

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data, clip, vae = build_inputs(Path(tmp), args.num_images)
        results = {}
        # (name, cached, compiled, precision, text encoder trained)
        modes = ([("cached", True, False, "no", False), ("no-cache", False, False, "no", False)]
                 + ([("compiled", True, True, "no", False)] if args.compile else [])
                 + ([("bf16", True, False, "bf16", False)] if args.bf16 else [])
                 + ([("text-encoder", True, False, "no", True)] if args.train_text_encoder else []))
        for mode, cache, compile, precision, train_text_encoder in modes:
            cfg = UnetTrainConfig(data=str(data), clip=str(clip), vae=str(vae), out=str(Path(tmp) / "out"),
                                  preset="small", batch_size=args.batch_size, lr=1e-4, epochs=1, cache=cache,
                                  cache_dir=str(Path(tmp) / "cache"), compile=compile, mixed_precision=precision,
                                  train_text_encoder=train_text_encoder)
            results[mode] = time_mode(cfg, args.seconds)
            setup = (f"; compiled in {results[mode]['setup_seconds']:.1f} s)" if compile else
                     f"; cache built once in {results[mode]['setup_seconds']:.1f} s for {args.num_images} images)"
                     if cache else ")")
            print(f"train-unet small, {mode:12s}: {results[mode]['samples_per_s']:6.1f} samples/s "
                  f"(batch {args.batch_size}, {results[mode]['steps']} steps in {results[mode]['seconds']:.1f} s"
                  + setup, flush=True)
    speedup = results["cached"]["samples_per_s"] / results["no-cache"]["samples_per_s"]
    print(f"cache speed-up: {speedup:.2f}x")
    # the optional modes against the cached one they change one thing of; None when not timed
    over_cached = {label: (results[mode]["samples_per_s"] / results["cached"]["samples_per_s"] if mode in results else None)
                   for label, mode in (("compile", "compiled"), ("bf16", "bf16"), ("text encoder", "text-encoder"))}
    for label, ratio in over_cached.items():
        if ratio is not None:
            print(f"{label} speed-up: {ratio:.2f}x")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    payload = {"benchmark": "train_unet", "preset": "small", "unet_preset": list(UNET_PRESETS["small"].block_out_channels),
               "image_size": 64, "batch_size": args.batch_size, "torch_threads": torch.get_num_threads(),
               "results": results, "cache_speedup": speedup, "compile_speedup": over_cached["compile"],
               "bf16_speedup": over_cached["bf16"], "text_encoder_speedup": over_cached["text encoder"],
               "machine": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "load_average_1min_at_end": load, "torch": torch.__version__,
               "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_results(payload, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
