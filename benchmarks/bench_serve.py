"""Throughput of a live `latentdiff serve`: images/s with 8 concurrent clients versus one request at a
time, i.e. what batching compatible requests on the model buys.

    .venv/bin/python benchmarks/bench_serve.py                 # random tiny pipeline, ~1-2 minutes on 2 CPU cores
    .venv/bin/python benchmarks/bench_serve.py --model DIR --steps 20 --size 64
    .venv/bin/python benchmarks/bench_serve.py --preset small --backends torch,onnx   # one server per backend

Both phases send the same A1111 txt2img request shape (same size, steps, sampler, so the concurrent
ones can share model calls) to a server on 127.0.0.1 and a free port. With several --backends, one server
per backend runs the same two phases in turn. Prints the numbers and writes benchmarks/results/serve.json
(serve-BACKENDS.json for several).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the shared test helpers: random pipeline, live server

from helpers.live_server import live_server  # noqa: E402
from helpers.random_pipeline import build_random_pipeline  # noqa: E402
from results_file import write_results  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "serve.json"


def request_body(args, seed: int) -> dict:
    return {"prompt": f"benchmark prompt {seed}", "seed": seed, "steps": args.steps, "width": args.size,
            "height": args.size, "sampler_name": "Euler", "cfg_scale": 7.5}


def one_at_a_time(url: str, args) -> float:
    with httpx.Client(base_url=url, timeout=600) as http:
        start = time.perf_counter()
        for i in range(args.requests):
            http.post("/sdapi/v1/txt2img", json=request_body(args, i)).raise_for_status()
        return time.perf_counter() - start


def concurrent(url: str, args) -> float:
    per_client = args.requests // args.clients
    failures: list[str] = []

    def client(c: int) -> None:
        with httpx.Client(base_url=url, timeout=600) as http:
            for r in range(per_client):
                response = http.post("/sdapi/v1/txt2img", json=request_body(args, 10_000 + c * per_client + r))
                if response.status_code != 200:
                    failures.append(response.text[:200])

    threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if failures:
        raise SystemExit(f"{len(failures)} requests failed, e.g. {failures[0]}")
    return elapsed


def queue_counters(url: str) -> dict:
    return httpx.get(url + "/api/info", timeout=30).json()["queue"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a pipeline folder (default: a random pipeline of --preset)")
    parser.add_argument("--preset", default="tiny", choices=("tiny", "small", "base"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--requests", type=int, default=16, help="requests in each phase (one image each)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--device", default=None)
    parser.add_argument("--backends", default="", help="comma-separated --backend values (default: the server's)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    if args.requests % args.clients:
        parser.error("--requests must be a multiple of --clients")

    backends = args.backends.split(",") if args.backends else [""]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(build_random_pipeline(Path(tmp) / args.preset, args.preset))
        for backend in backends:
            results[backend or "default"] = measure(args, model, backend)
    if len(results) == 1:
        write_results(next(iter(results.values())), args.out)
    else:
        out = Path(args.out)
        write_results({"benchmark": "serve", "by_backend": results},
                      out.with_name(f"{out.stem}-{'-'.join(results)}{out.suffix}"))


def measure(args, model: str, backend: str) -> dict:
    extra = ["--max-queue", str(4 * args.clients), "--max-batch", str(args.max_batch)]
    if args.device:
        extra += ["--device", args.device]
    if backend:
        extra += ["--backend", backend]
    with live_server(model, *extra) as server:
        httpx.post(server.url + "/sdapi/v1/txt2img", json=request_body(args, 999_999), timeout=600).raise_for_status()
        before = queue_counters(server.url)
        sequential_s = one_at_a_time(server.url, args)
        middle = queue_counters(server.url)
        concurrent_s = concurrent(server.url, args)
        after = queue_counters(server.url)

    sequential_ips = args.requests / sequential_s
    concurrent_ips = args.requests / concurrent_s
    batches = after["batches_run"] - middle["batches_run"]
    result = {
        "benchmark": "serve",
        "model": args.model or f"random {args.preset} pipeline",
        "backend": backend or "default",
        "device": args.device or "auto",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_1m": round(os.getloadavg()[0], 2),
        "request": {"steps": args.steps, "width": args.size, "height": args.size, "sampler_name": "Euler",
                    "cfg_scale": 7.5, "images": 1},
        "requests_per_phase": args.requests,
        "clients": args.clients,
        "max_batch": args.max_batch,
        "one_at_a_time": {"seconds": round(sequential_s, 3), "images_per_s": round(sequential_ips, 3),
                          "model_calls": middle["batches_run"] - before["batches_run"]},
        "concurrent": {"seconds": round(concurrent_s, 3), "images_per_s": round(concurrent_ips, 3),
                       "model_calls": batches, "mean_images_per_call": round(args.requests / max(batches, 1), 2)},
        "batching_gain": round(concurrent_ips / sequential_ips, 3),
    }
    name = backend or "default backend"
    print(f"[{name}] one at a time: {sequential_ips:.2f} images/s ({args.requests} requests in {sequential_s:.1f} s)")
    print(f"[{name}] {args.clients} concurrent clients: {concurrent_ips:.2f} images/s ({args.requests} requests in "
          f"{concurrent_s:.1f} s, {batches} model calls, {result['concurrent']['mean_images_per_call']} images/call)")
    print(f"[{name}] batching gain: {result['batching_gain']:.2f}x")
    return result


if __name__ == "__main__":
    main()
