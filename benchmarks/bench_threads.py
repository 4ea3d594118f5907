"""Images/s of generation at 1, 2, ... threads on each backend, in the machine's current state: the
measurement behind `--threads`' default (latentdiff.runtime.pick_num_threads).

    .venv/bin/python benchmarks/bench_threads.py [--model DIR] [--backends torch,onnx] [--threads 1,2] [--rounds 3]
    # and again with another process holding a core, e.g. beside `python -c "while True: pass"`

Loads the pipeline once per (backend, threads) (ONNX Runtime fixes its thread pool when a session is made),
then times one image at a time, alternating the settings each round so that load from other processes
hits them alike. Prints images/s per setting, the load average and what `pick_num_threads()` would pick
now, and writes benchmarks/results/threads-LABEL.json (`--label idle`, `--label shared`, ...).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from latentdiff.pipeline import GenerationRequest, TextToImage
from latentdiff.runtime import pick_num_threads
from results_file import write_results

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a pipeline folder (default: the bundled model)")
    parser.add_argument("--backends", default="torch,onnx")
    parser.add_argument("--threads", default="1,2", help="thread counts to compare, comma-separated")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=3, help="timed images per setting")
    parser.add_argument("--label", default="now", help="the machine's state, for the results file's name")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    auto_threads = pick_num_threads()
    settings = [(backend, int(n)) for backend in args.backends.split(",") for n in args.threads.split(",")]
    loaded = {setting: TextToImage.load(args.model, "cpu", setting[0], setting[1]) for setting in settings}
    request = GenerationRequest(["a red apple"], seed=0, steps=args.steps)
    times: dict[tuple[str, int], list[float]] = {setting: [] for setting in settings}
    for round_index in range(args.rounds + 1):  # round 0 warms each up
        for (backend, threads), text_to_image in loaded.items():
            torch.set_num_threads(threads)  # torch's pool is per process; sessions keep their own
            start = time.perf_counter()
            text_to_image.generate(request)
            if round_index:
                times[(backend, threads)].append(time.perf_counter() - start)
    rates = {f"{backend}_{threads}": round(1 / statistics.median(ts), 3) for (backend, threads), ts in times.items()}
    for name, rate in rates.items():
        print(f"{name} threads: {rate:.2f} images/s")
    result = {"benchmark": "threads", "label": args.label, "model": args.model or "bundled", "steps": args.steps,
              "rounds": args.rounds, "images_per_second": rates,
              "seconds_per_image": {f"{b}_{n}": [round(t, 3) for t in ts] for (b, n), ts in times.items()},
              "load_average_1m_before": round(load_before, 2), "load_average_1m_after": round(os.getloadavg()[0], 2),
              "pick_num_threads_before": auto_threads, "cpus": os.cpu_count(), "torch": torch.__version__,
              "machine": platform.processor() or platform.machine()}
    print(f"load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}; the default would pick {auto_threads} thread(s)")
    write_results(result, RESULTS_DIR / f"threads-{args.label}.json")


if __name__ == "__main__":
    main()
