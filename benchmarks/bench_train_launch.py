"""train-unet samples/s on this machine's cores: one process with N threads against N processes of one thread
(`accelerate launch --multi_gpu`, gloo on the CPU), at the same global batch and at a larger one.

    python benchmarks/bench_train_launch.py --init PIPELINE --data DATA [--clip CLIP] [--vae VAE] [--steps 300]
        [--cores 2] [--train-args "--mixed-precision bf16 ..."] [--label NAME]

Each launch is the real command (`latentdiff train-unet --init PIPELINE ...`, its caches built once by the first
launch) for --steps optimizer steps into a temporary folder, run one after another so they do not share the
cores. Speed is read from the run's TensorBoard log: samples between the 20th step and the last, over the wall
time between them, so start-up, cache loading and the final export are left out. Prints samples/s per launch
and its ratio to the first, and writes benchmarks/results/train_launch-LABEL.json.

Why: a small U-Net's tensors are too small to keep two threads of one process busy, so two single-thread
processes that average their gradients may train faster at the same recipe (global batch) than one
two-thread process. Whether they do is a property of the machine, so it is measured, not assumed.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import write_results

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SKIPPED_STEPS = 20  # the first steps pay for allocations and the first batches' reads


def launches(cores: int, batch_size: int) -> list[dict]:
    """(name, processes, threads per process, batch per process): the same global batch first, then 2x."""
    return [
        {"name": f"1 process x {cores} threads, batch {batch_size}", "processes": 1, "threads": cores,
         "batch_size": batch_size},
        {"name": f"{cores} processes x 1 thread, batch {batch_size // cores} each (global {batch_size})",
         "processes": cores, "threads": 1, "batch_size": batch_size // cores},
        {"name": f"1 process x {cores} threads, batch {2 * batch_size}", "processes": 1, "threads": cores,
         "batch_size": 2 * batch_size},
        {"name": f"{cores} processes x 1 thread, batch {2 * batch_size // cores} each (global {2 * batch_size})",
         "processes": cores, "threads": 1, "batch_size": 2 * batch_size // cores},
    ]


def command(launch: dict, args, out: Path) -> list[str]:
    train = ["-m", "latentdiff", "train-unet", "--init", args.init, "--data", args.data, "--out", str(out),
             "--batch-size", str(launch["batch_size"]), "--max-steps", str(args.steps),
             "--validate-every", "0", "--checkpoint-every", str(10 * args.steps), "--seed", "0"]
    train += [flag for flag, value in (("--clip", args.clip), ("--vae", args.vae)) if value for flag in (flag, value)]
    train += shlex.split(args.train_args)
    if launch["processes"] == 1:
        return [sys.executable, *train]
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
            str(launch["processes"]), "--num_machines", "1", "--dynamo_backend", "no", *train]


def samples_per_s(log_dir: Path, global_batch: int) -> tuple[float, int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    points = events.Scalars("train/samples_per_s")
    first = next(p for p in points if p.step >= SKIPPED_STEPS)
    last = points[-1]
    return (last.step - first.step) * global_batch / (last.wall_time - first.wall_time), last.step - first.step


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", required=True, help="the pipeline folder train-unet starts from")
    parser.add_argument("--data", required=True, help="the prepared dataset folder")
    parser.add_argument("--clip", default="", help="the CLIP folder (default: the pipeline's text encoder)")
    parser.add_argument("--vae", default="", help="the VAE folder (default: the pipeline's)")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per launch")
    parser.add_argument("--batch-size", type=int, default=32, help="the global batch of the recipe")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="cores to spend (threads or processes)")
    parser.add_argument("--train-args", default="", help="more train-unet flags, as one string")
    parser.add_argument("--only", default="", help="comma-separated launch numbers to run (1-4; default: all)")
    parser.add_argument("--label", default="", help="results file suffix (default: the number of cores)")
    args = parser.parse_args()
    if args.steps <= SKIPPED_STEPS + 10:
        parser.error(f"--steps must be more than {SKIPPED_STEPS + 10}: the first {SKIPPED_STEPS} are not timed")

    chosen = launches(args.cores, args.batch_size)
    if args.only:
        chosen = [chosen[int(i) - 1] for i in args.only.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_train_launch_") as tmp:
        for number, launch in enumerate(chosen):
            out = Path(tmp) / f"run{number}"
            env = {**os.environ, "OMP_NUM_THREADS": str(launch["threads"])}
            print(f"{launch['name']}: training {args.steps} steps ...", flush=True)
            started = time.perf_counter()
            done = subprocess.run(command(launch, args, out), env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"launch '{launch['name']}' failed (exit {done.returncode}); its error is above")
            rate, timed_steps = samples_per_s(out / "logs", launch["processes"] * launch["batch_size"])
            results.append({**launch, "global_batch": launch["processes"] * launch["batch_size"],
                            "samples_per_s": rate, "timed_steps": timed_steps,
                            "wall_s": time.perf_counter() - started})
            ratio = rate / results[0]["samples_per_s"]
            print(f"  {rate:6.1f} samples/s over {timed_steps} steps ({ratio:.2f}x the first)", flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    import torch

    payload = {"benchmark": "train_launch", "init": args.init, "data": args.data, "steps": args.steps,
               "train_args": args.train_args, "launches": results, "machine": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "load_average_1min_at_end": load, "torch": torch.__version__,
               "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_results(payload, RESULTS_DIR / f"train_launch-{args.label or f'{args.cores}cores'}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
