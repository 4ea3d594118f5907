"""Images per second: plain diffusers vs `latentdiff generate`'s pipeline on each backend (torch, onnx,
openvino), same folder, same settings, at several batch sizes, with each one's largest pixel difference.

    .venv/bin/python benchmarks/bench_generate.py [--preset small] [--steps 8] [--batch-sizes 1,4] [--rounds 5]

Builds a randomly initialised `--preset` pipeline folder (speed does not depend on what the weights
learned), loads it as plain `StableDiffusionPipeline.from_pretrained(dir)` and as
`latentdiff.pipeline.TextToImage` with `--backend torch`, `onnx` and `openvino` (the exports are made
before timing, into a temporary cache), then times all of them on the same prompts, seeds, steps,
guidance and batch, alternating runs so that load from other processes hits them alike. Prints images/s,
the ratio to diffusers and the largest pixel difference (0..255) from latentdiff's torch images (torch's
own is against diffusers), and writes benchmarks/results/generate.json.
For onnx and openvino it also reports the time spent outside the runtime's calls (diffusers' loop, the
scheduler, tokenizing, post-processing) per denoising step: what a leaner loop than diffusers' could save.
`--profile` prints the operators that take our torch pipeline's time instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the random-pipeline builder the tests use

from helpers.random_pipeline import build_random_pipeline  # noqa: E402

from latentdiff.backends import runtime_installed, sessions  # noqa: E402
from latentdiff.diffusion.schedulers import make_scheduler  # noqa: E402
from latentdiff.pipeline import GenerationRequest, TextToImage  # noqa: E402
from results_file import write_results  # noqa: E402

PROMPTS = ["a red circle on a white background", "a blue square in the corner", "two small purple hearts",
           "a green triangle and a yellow star"]
RESULTS = ROOT / "benchmarks" / "results" / "generate.json"


def max_difference(images_a, images_b) -> int:
    return max(int(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max()) for a, b in zip(images_a, images_b))


SECONDS_IN_RUNTIME = [0.0]  # time inside ONNX Runtime / OpenVINO calls, summed by the wrappers below


def time_runtime_calls() -> None:
    """Wrap every session's __call__ so that the time inside the runtimes is summed in SECONDS_IN_RUNTIME."""
    for cls in sessions.SESSIONS.values():
        def timed(self, _call=cls.__call__, **inputs):
            start = time.perf_counter()
            try:
                return _call(self, **inputs)
            finally:
                SECONDS_IN_RUNTIME[0] += time.perf_counter() - start
        cls.__call__ = timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-sizes", default="1,4", help="images per run (one batch), comma-separated")
    parser.add_argument("--rounds", type=int, default=5, help="timed runs of each pipeline per batch size")
    parser.add_argument("--scheduler", default="dpmpp-2m")
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for every pipeline (torch, ONNX Runtime and OpenVINO follow "
                             "torch.set_num_threads); 0: torch's default. On a shared machine 1 is far steadier")
    parser.add_argument("--backends", default="torch,onnx,openvino")
    parser.add_argument("--ablation", action="store_true",
                        help="also time the torch pipeline with channels-last weights, to see what that would buy")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    time_runtime_calls()
    backends = [b for b in args.backends.split(",") if runtime_installed(b)]

    from diffusers import StableDiffusionPipeline

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LATENTDIFF_CACHE_DIR"] = str(Path(tmp) / "cache")  # exports made below, before timing
        folder = build_random_pipeline(Path(tmp) / args.preset, args.preset)
        ours = {backend: TextToImage.load(str(folder), None if backend != "torch" else "cpu", backend)
                for backend in backends}
        if args.ablation:
            ours["torch_channels_last"] = TextToImage.load(str(folder), "cpu", "torch")
            ours["torch_channels_last"].pipe.unet.to(memory_format=torch.channels_last)
            ours["torch_channels_last"].pipe.vae.to(memory_format=torch.channels_last)
        plain = StableDiffusionPipeline.from_pretrained(folder)
        plain.scheduler = make_scheduler(args.scheduler, plain.scheduler.config)
        plain.set_progress_bar_config(disable=True)
        size = ours["torch"].default_size

        def runner(pipeline: TextToImage, batch: int):
            def run():
                request = GenerationRequest([PROMPTS[i % len(PROMPTS)] for i in range(batch)], num_images=1,
                                            seed=args.seed, steps=args.steps, guidance=args.guidance,
                                            scheduler=args.scheduler)
                return [r.image for r in pipeline.generate(request, batch_size=batch)]  # one batch
            return run

        def plain_runner(batch: int):
            def run():
                generators = [torch.Generator("cpu").manual_seed(args.seed + i) for i in range(batch)]
                return plain(prompt=[PROMPTS[i % len(PROMPTS)] for i in range(batch)], num_inference_steps=args.steps,
                             guidance_scale=args.guidance, height=size, width=size, generator=generators).images
            return run

        if args.profile:
            run_ours = runner(ours["torch"], batch_sizes[0])
            run_ours()
            with torch.profiler.profile() as prof:
                run_ours()
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
            return

        per_batch = {}
        for batch in batch_sizes:
            contenders = {"diffusers": plain_runner(batch),
                          **{f"latentdiff_{backend}": runner(p, batch) for backend, p in ours.items()}}
            # warm-up (first calls allocate and pick kernels), and the pixel comparison
            images = {name: fn() for name, fn in contenders.items()}
            differences = {name: max_difference(images[name], images["latentdiff_torch"])
                           for name in contenders if name != "latentdiff_torch"}
            differences["latentdiff_torch"] = max_difference(images["latentdiff_torch"], images["diffusers"])
            times = {name: [] for name in contenders}
            outside = {name: [] for name in contenders if name.endswith(("_onnx", "_openvino"))}
            for _ in range(args.rounds):
                for name, fn in contenders.items():
                    SECONDS_IN_RUNTIME[0] = 0.0
                    start = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - start)
                    if name in outside:
                        outside[name].append(times[name][-1] - SECONDS_IN_RUNTIME[0])
            rate = {name: batch / statistics.median(ts) for name, ts in times.items()}
            per_batch[str(batch)] = {
                "images_per_second": {k: round(v, 3) for k, v in rate.items()},
                "ratio_over_diffusers": {k: round(v / rate["diffusers"], 2) for k, v in rate.items()},
                "max_pixel_difference_of_255": differences,
                "seconds_per_run": {k: [round(t, 3) for t in ts] for k, ts in times.items()},
                # per image: what diffusers' loop costs around the runtime's calls, per step and as a share
                "outside_runtime_ms_per_step": {k: round(1000 * statistics.median(v) / batch / args.steps, 2)
                                                for k, v in outside.items()},
                "outside_runtime_share": {k: round(statistics.median(v) / statistics.median(times[k]), 3)
                                          for k, v in outside.items()},
            }
            print(f"batch {batch}: " + ", ".join(f"{k} {v:.2f} img/s ({v / rate['diffusers']:.2f}x, "
                                                 f"max diff {differences[k]}/255)" for k, v in rate.items()))
            for name, share in per_batch[str(batch)]["outside_runtime_share"].items():
                print(f"  {name}: {per_batch[str(batch)]['outside_runtime_ms_per_step'][name]:.2f} ms per image-step "
                      f"({share:.0%} of the time) outside the runtime's calls")

    result = {
        "benchmark": "generate",
        "preset": args.preset,
        "image_size": size,
        "scheduler": args.scheduler,
        "steps": args.steps,
        "guidance": args.guidance,
        "rounds": args.rounds,
        "by_batch_size": per_batch,
        "pixel_difference_note": "each latentdiff backend against latentdiff_torch; latentdiff_torch and "
                                 "diffusers against each other",
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
    print(json.dumps(result, indent=2))
    write_results(result, args.out)


if __name__ == "__main__":
    main()
