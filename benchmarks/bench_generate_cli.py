"""Wall time of a whole `latentdiff generate` command, as a user types it: one-shot (`--keep-alive 0`,
everything loaded in the process) versus calls answered by the keep-alive worker the previous call left:
the one right after it (the worker is still loading) and later ones.

    .venv/bin/python benchmarks/bench_generate_cli.py             # the bundled model, 4 images at 64x64, ~1.5 min
    .venv/bin/python benchmarks/bench_generate_cli.py --model DIR --num-images 4 --repeats 3
    .venv/bin/python benchmarks/bench_generate_cli.py --backends default,torch --one-shot-only   # cold runs per backend

Each timing is a fresh `latentdiff generate` process from start to exit (imports, loading, denoising,
writing PNGs). The worker lives in a private runtime folder, so other workers are neither used nor
disturbed; the last call stops it. With several --backends, the one-shot calls of each backend are
interleaved (after one untimed call each, which also makes the backend's export into a private cache);
the worker timings use the first backend. Prints the numbers and writes benchmarks/results/generate_cli.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import write_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "generate_cli.json"
LATENTDIFF = [sys.executable, "-m", "latentdiff"]
WORKER_START_TIMEOUT_S = 120
RAN_ON: dict[str, set[str]] = {}  # --backends value -> the backends the commands said they ran on


def timed_generate(args, out_dir: Path, env: dict, keep_alive_s: float, backend: str = "default") -> float:
    command = [*LATENTDIFF, "generate", args.prompt, "--num-images", str(args.num_images), "--seed", "1",
               "--out", str(out_dir), "--keep-alive", str(keep_alive_s)]
    if backend != "default":  # "default": no --backend, what a user gets (onnx on a CPU)
        command += ["--backend", backend]
    if args.model:
        command += ["--model", args.model]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    ran = re.search(r"\((torch|onnx|openvino)\), ", done.stdout)  # "Generating 4 image(s) of 64x64 with NAME (onnx), ..."
    if backend != "default" and (ran is None or ran.group(1) != backend):
        raise SystemExit(f"asked for --backend {backend} but the command said: {done.stdout[:300]}")
    RAN_ON.setdefault(backend, set()).add(ran.group(1) if ran else "?")
    return elapsed


def wait_for_worker(runtime: Path) -> None:
    deadline = time.monotonic() + WORKER_START_TIMEOUT_S
    while not list(runtime.glob("*.sock")):
        if time.monotonic() > deadline:
            raise SystemExit("the keep-alive worker never opened its socket")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a pipeline folder (default: the bundled model)")
    parser.add_argument("--prompt", default="red apple")
    parser.add_argument("--num-images", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of each kind")
    parser.add_argument("--backends", default="default",
                        help="comma-separated: default (no --backend flag), torch, onnx, openvino")
    parser.add_argument("--one-shot-only", action="store_true", help="skip the keep-alive worker timings")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    backends = args.backends.split(",")

    with tempfile.TemporaryDirectory() as tmp:
        runtime = Path(tmp) / "runtime"
        env = {k: v for k, v in os.environ.items() if k != "LATENTDIFF_BACKEND"}
        env = {**env, "LATENTDIFF_RUNTIME_DIR": str(runtime), "LATENTDIFF_CACHE_DIR": str(Path(tmp) / "cache")}
        # the OS file cache, as any second call has it; for onnx/openvino also the export, made once
        first_call = {b: timed_generate(args, Path(tmp) / f"warmup-{b}", env, 0, b) for b in backends}
        one_shot_by_backend = {b: [] for b in backends}
        for i in range(args.repeats):
            for b in backends:
                one_shot_by_backend[b].append(timed_generate(args, Path(tmp) / f"one-shot-{b}-{i}", env, 0, b))
        one_shot = one_shot_by_backend[backends[0]]
        summary = {
            "benchmark": "generate_cli",
            "model": args.model or "bundled default model",
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
            "command": f"latentdiff generate '{args.prompt}' --num-images {args.num_images} --keep-alive 0 --backend B",
            "first_call_s_by_backend (onnx/openvino: includes the export)": {b: round(t, 2) for b, t in first_call.items()},
            "one_shot_s_by_backend": {b: [round(t, 2) for t in ts] for b, ts in one_shot_by_backend.items()},
            "median_one_shot_s_by_backend": {b: round(statistics.median(ts), 2) for b, ts in one_shot_by_backend.items()},
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "ran_on": {b: sorted(names) for b, names in RAN_ON.items()},
        }
        for b, ts in one_shot_by_backend.items():
            print(f"one-shot --backend {b}: {', '.join(f'{t:.2f}' for t in ts)} s (first call {first_call[b]:.2f} s)")
        if args.one_shot_only:
            write_results(summary, args.out)
            return
        leaves_worker = timed_generate(args, Path(tmp) / "leaves-worker", env, 120, backends[0])
        wait_for_worker(runtime)
        # at once: the worker has its socket but is still importing and loading, so this call waits for it
        right_after = timed_generate(args, Path(tmp) / "right-after", env, 120, backends[0])
        warm = [timed_generate(args, Path(tmp) / f"warm-{i}", env, 120, backends[0]) for i in range(args.repeats)]
        timed_generate(args, Path(tmp) / "stop", env, 0, backends[0])  # answered by the worker, which then stops

    result = {
        **summary,
        "one_shot_s": [round(t, 2) for t in one_shot],
        "first_call_leaving_worker_s": round(leaves_worker, 2),
        "next_call_at_once_while_worker_loads_s": round(right_after, 2),
        "warm_worker_s": [round(t, 2) for t in warm],
        "median_one_shot_s": round(statistics.median(one_shot), 2),
        "median_warm_worker_s": round(statistics.median(warm), 2),
    }
    result["speedup"] = round(result["median_one_shot_s"] / result["median_warm_worker_s"], 2)
    print(f"one-shot (--keep-alive 0): {', '.join(f'{t:.2f}' for t in one_shot)} s")
    print(f"first call, leaving a worker: {leaves_worker:.2f} s")
    print(f"next call at once, waiting for the worker to load: {right_after:.2f} s")
    print(f"answered by the warm worker: {', '.join(f'{t:.2f}' for t in warm)} s")
    print(f"median {result['median_one_shot_s']} s -> {result['median_warm_worker_s']} s ({result['speedup']}x)")
    write_results(result, args.out)


if __name__ == "__main__":
    main()
