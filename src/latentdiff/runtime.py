"""Device, dtype, seeding and process-group helpers that every stage uses.

fp32 on CPU (bf16/fp16 matmuls are ~300x slower on the development CPUs); bf16 mixed precision is
offered on CUDA through accelerate. Generators for sampling are always CPU generators, so a seed gives
the same noise, and so the same image, on any device (as diffusers recommends).
"""

from __future__ import annotations

import os
import random
import warnings

import numpy as np
import torch
from accelerate import PartialState

from latentdiff.limits import check_threads


def pick_device(requested: str | None = None) -> torch.device:
    """`requested` may be 'cpu', 'cuda', 'cuda:1', 'mps'; None picks the best available."""
    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device) -> torch.dtype:
    """Weights' dtype for inference. fp32 everywhere but CUDA, where fp16 halves memory and time."""
    return torch.float16 if device.type == "cuda" else torch.float32


def mixed_precision_for(device: torch.device) -> str:
    """accelerate's `mixed_precision` for training: bf16 on CUDA cards that support it, else fp32."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def pick_num_threads(requested: int | None = None) -> int:
    """CPU threads for generation in this process: `requested` (--threads), else $OMP_NUM_THREADS, else the
    cores other processes leave free now (usable cores minus the 1-minute load average, rounded; at least 1).
    Call it when the process starts, before its own work raises the load average. Why by load: on the 2-core
    machine with another process holding a core, two torch threads ran eager generation 5-35x slower than one.
    On the idle machine two threads gained nothing at 64x64 (torch 1.27 vs 1.26 images/s, onnx 2.61 vs 2.89);
    larger images were not measured (benchmarks/bench_threads.py; README "Export and backends")."""
    if check_threads(requested) is not None:
        return int(requested)
    if os.environ.get("OMP_NUM_THREADS", "").strip().isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    busy = round(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0
    return max(1, cores - busy)


def use_threads(requested: int | None = None) -> int:
    """Set torch's intra-op threads (ONNX Runtime and OpenVINO sessions follow torch's count) to
    `pick_num_threads(requested)` and return it. With OpenMP the setting belongs to the calling thread: call it
    in the thread that generates (the server's worker thread loads and generates in the same thread)."""
    threads = pick_num_threads(requested)
    torch.set_num_threads(threads)
    return threads


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) for reproducible training."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


def module_device_dtype(module: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where a module's weights live and their dtype; a module without parameters (an ONNX Runtime or
    OpenVINO session, latentdiff.backends) runs on the CPU in fp32."""
    param = next(module.parameters(), None)
    return (param.device, param.dtype) if param is not None else (torch.device("cpu"), torch.float32)


def cpu_generator(seed: int) -> torch.Generator:
    """A CPU generator: the same seed draws the same noise whatever device the model runs on."""
    return torch.Generator("cpu").manual_seed(int(seed))


def process_state():
    """accelerate's process-group singleton (rank, world size, barriers), joined exactly as the training
    loop's Accelerator joins it: with `cpu=True` on machines without an accelerator, which is what makes
    processes started by torchrun / `accelerate launch --multi_gpu` form one gloo group. Code that runs
    before the loop (cache building, writing a config once) must use this, not a bare `PartialState()`,
    or the first call fixes a one-process group."""
    return PartialState(cpu=pick_device().type == "cpu")


def warn_if_cpu_launch_started_one_process(world_size: int) -> None:
    """`accelerate launch --cpu --num_processes N` (accelerate <= 1.x) starts ONE process unless an MPI
    hostfile is given; it only sets MASTER_ADDR. Say so, instead of letting the user believe N trained."""
    if world_size == 1 and os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true") \
            and "MASTER_ADDR" in os.environ and "WORLD_SIZE" not in os.environ:
        warnings.warn("`accelerate launch --cpu --num_processes N` started only one process (accelerate needs "
                      "--mpirun_hostfile for several CPU processes); for N processes over gloo use "
                      "`accelerate launch --multi_gpu --num_processes N ...` (works without GPUs) or torchrun.",
                      stacklevel=2)
