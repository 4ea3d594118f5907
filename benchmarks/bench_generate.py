"""Images per second: `latentdiff generate`'s pipeline vs plain diffusers, same folder, same settings.

    .venv/bin/python benchmarks/bench_generate.py [--preset small] [--steps 8] [--images 4] [--rounds 3]

Builds a randomly initialised `--preset` pipeline folder (speed does not depend on what the weights
learned), loads it twice, as `latentdiff.pipeline.TextToImage` and as plain
`StableDiffusionPipeline.from_pretrained(dir)` with the same scheduler, then times both on the same
prompts, seeds, steps, guidance and batch, alternating runs so that load from other processes hits both
alike. Prints images/s, the ratio (ours / diffusers) and the largest pixel difference between the two
outputs (0: ours is diffusers' own loop with the same weights and batch), and writes them to
benchmarks/results/generate.json.
`--profile` prints the operators that take our pipeline's time instead.
"""

from __future__ import annotations

import argparse
import json
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

from latentdiff.diffusion.schedulers import make_scheduler  # noqa: E402
from latentdiff.pipeline import GenerationRequest, TextToImage  # noqa: E402
from results_file import write_results  # noqa: E402

PROMPTS = ["a red circle on a white background", "a blue square in the corner", "two small purple hearts",
           "a green triangle and a yellow star"]
RESULTS = ROOT / "benchmarks" / "results" / "generate.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--images", type=int, default=4, help="images per run, denoised as one batch")
    parser.add_argument("--rounds", type=int, default=5, help="timed runs of each pipeline")
    parser.add_argument("--scheduler", default="dpmpp-2m")
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads for both pipelines (0: torch's default); on a shared, "
                             "oversubscribed machine 1 thread gives far steadier timings")
    parser.add_argument("--ablation", action="store_true",
                        help="also time our pipeline with channels-last weights, to see what that would buy")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from diffusers import StableDiffusionPipeline

    with tempfile.TemporaryDirectory() as tmp:
        folder = build_random_pipeline(Path(tmp) / args.preset, args.preset)
        ours = TextToImage.load(str(folder), "cpu")
        plain = StableDiffusionPipeline.from_pretrained(folder)
        plain.scheduler = make_scheduler(args.scheduler, plain.scheduler.config)
        plain.set_progress_bar_config(disable=True)

        prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.images)]
        seeds = [args.seed + i for i in range(args.images)]
        size = ours.default_size

        def runner(pipeline: TextToImage):
            def run():
                request = GenerationRequest(prompts, num_images=1, seed=args.seed, steps=args.steps,
                                            guidance=args.guidance, scheduler=args.scheduler)
                # one batch, like the diffusers call below (the request has one image per prompt)
                return [r.image for r in pipeline.generate(request, batch_size=args.images)]
            return run

        run_ours = runner(ours)
        contenders = {"latentdiff": run_ours}
        if args.ablation:
            channels_last = TextToImage.load(str(folder), "cpu")
            channels_last.pipe.unet.to(memory_format=torch.channels_last)
            channels_last.pipe.vae.to(memory_format=torch.channels_last)
            contenders["latentdiff_channels_last"] = runner(channels_last)

        def run_plain():
            generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
            return plain(prompt=prompts, num_inference_steps=args.steps, guidance_scale=args.guidance,
                         height=size, width=size, generator=generators).images

        if args.profile:
            run_ours()
            with torch.profiler.profile() as prof:
                run_ours()
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
            return

        # warm-up (first calls allocate and pick kernels), and the pixel comparison
        ours_images, plain_images = run_ours(), run_plain()
        max_diff = max(int(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max())
                       for a, b in zip(ours_images, plain_images))
        contenders["diffusers"] = run_plain
        for name, fn in contenders.items():
            if name not in ("latentdiff", "diffusers"):
                fn()  # warm-up
        times = {name: [] for name in contenders}
        for _ in range(args.rounds):
            for name, fn in contenders.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)

    rate = {name: args.images / statistics.median(ts) for name, ts in times.items()}
    result = {
        "benchmark": "generate",
        "preset": args.preset,
        "image_size": size,
        "scheduler": args.scheduler,
        "steps": args.steps,
        "guidance": args.guidance,
        "images_per_run": args.images,
        "rounds": args.rounds,
        "images_per_second": {k: round(v, 4) for k, v in rate.items()},
        "seconds_per_run": {k: [round(t, 3) for t in ts] for k, ts in times.items()},
        "ratio_latentdiff_over_diffusers": round(rate["latentdiff"] / rate["diffusers"], 3),
        "max_pixel_difference_of_255": max_diff,
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
    print(json.dumps(result, indent=2))
    write_results(result, RESULTS)


if __name__ == "__main__":
    main()
