"""Training state on disk: atomic, rotated, separate from the released weights; and the "stage complete"
marker the `train` orchestrator reads.

Layout under a stage's output folder:

    OUT/training_state/step-000200/    one checkpoint (the last `keep` are kept)
        model.safetensors              trainable module's weights
        ema.safetensors                EMA weights (when EMA is on)
        optimizer.pt                   optimizer + LR scheduler state (torch.save; loaded weights_only=True)
        rng-rank0.pt ...               every RNG of each process (python, numpy, torch, cuda, loop generator)
        state.json                     step, data position, config; written last
    OUT/latentdiff_complete.json       written after the released artefact is exported

Atomicity: a checkpoint is written into `training_state/.tmp-step-XXXXXX`, every file fsynced, then the
folder is renamed to `step-XXXXXX` (rename is atomic on POSIX) and the parent fsynced. A crash or a failed
write (disk full) at any moment leaves the earlier checkpoints untouched; stale temp folders are removed
by the next write. Old checkpoints are renamed away before deletion so a half-deleted one is never read.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

# torch, numpy and safetensors are imported inside the functions that use them: every training command
# imports this module (is_stage_complete) to answer --help and argument mistakes before torch loads (~9 s).

if TYPE_CHECKING:  # torch and numpy load in the functions that use them: `latentdiff train-* --help`,
    import torch   # and a mistake in the options, are answered before torch's ~2 s import

STATE_DIRNAME = "training_state"
COMPLETE_MARKER = "latentdiff_complete.json"
STATE_FILE = "state.json"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
_CHECKPOINT_RE = re.compile(r"^step-(\d+)$")


def state_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / STATE_DIRNAME


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


# ------------------------------------------------------------------ listing


def list_checkpoints(out_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (those with a state.json), oldest first."""
    root = state_dir(out_dir)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _CHECKPOINT_RE.match(path.name)
        if match and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    checkpoints = list_checkpoints(out_dir)
    return checkpoints[-1][1] if checkpoints else None


def read_state(folder: Path) -> dict[str, Any]:
    """A checkpoint's state.json: its step, data position, the run's options and task."""
    return json.loads((folder / STATE_FILE).read_text())


def write_state(folder: Path, state: dict[str, Any]) -> None:
    # Written last: a folder without it is never taken for a checkpoint.
    (folder / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")


# ------------------------------------------------------------------ atomic writing


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            _fsync_path(path)
    _fsync_path(root)


def begin_checkpoint(out_dir: str | Path, step: int) -> Path:
    """Create (empty) the temporary folder a checkpoint for `step` is written into; removes stale ones."""
    root = state_dir(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in root.glob(".trash-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".tmp-{checkpoint_name(step)}"
    tmp.mkdir()
    return tmp


def abort_checkpoint(tmp: Path) -> None:
    shutil.rmtree(tmp, ignore_errors=True)


def commit_checkpoint(tmp: Path, out_dir: str | Path, step: int, keep: int) -> Path:
    """fsync the temp folder, rename it into place, fsync the parent, then drop all but the last `keep`."""
    root = state_dir(out_dir)
    final = root / checkpoint_name(step)
    fsync_tree(tmp)
    if final.exists():  # the same step written again (a resumed run that stops where it started)
        trash = root / f".trash-{final.name}"
        final.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
    tmp.rename(final)
    _fsync_path(root)
    prune_checkpoints(out_dir, keep)
    return final


def prune_checkpoints(out_dir: str | Path, keep: int) -> None:
    checkpoints = list_checkpoints(out_dir)
    for _, path in checkpoints[: max(0, len(checkpoints) - max(1, keep))]:
        trash = path.with_name(f".trash-{path.name}")
        path.rename(trash)  # atomic: the checkpoint disappears whole, then its files go
        shutil.rmtree(trash, ignore_errors=True)


def write_json_atomic(path: str | Path, payload: Any) -> None:
    """Write JSON next to `path`, fsync, rename over it: readers see the old or the new file, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


# ------------------------------------------------------------------ tensors


def save_module_weights(module: torch.nn.Module, path: Path) -> None:
    """safetensors; `save_model` handles tied/shared tensors that `save_file` refuses."""
    from safetensors.torch import save_model

    save_model(module, str(path))


def load_module_weights(module: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import load_model

    load_model(module, str(path), strict=True, device=str(next(module.parameters()).device))


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def save_torch_state(obj: Any, path: Path) -> None:
    """Optimizer/scheduler/RNG state: plain containers of tensors and numbers (loadable weights_only)."""
    import torch

    torch.save(obj, path)


def load_torch_state(path: Path) -> Any:
    import torch

    # weights_only=True: a tampered checkpoint cannot run code when loaded.
    return torch.load(path, map_location="cpu", weights_only=True)


def tensor_bytes(*objs: Any) -> int:
    """Bytes of every distinct tensor in nested dicts/lists/tuples/modules: what writing them takes on disk,
    give or take the headers (used to say how much room a checkpoint or an export needs)."""
    import torch

    seen: set[tuple[int, int]] = set()
    total = 0
    stack = list(objs)
    while stack:
        obj = stack.pop()
        if isinstance(obj, torch.nn.Module):
            stack.extend(obj.state_dict().values())
        elif isinstance(obj, torch.Tensor):
            key = (obj.untyped_storage().data_ptr(), obj.nbytes) if obj.device.type != "meta" else (id(obj), 0)
            if key not in seen:
                seen.add(key)
                total += obj.nbytes
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
    return total


# ------------------------------------------------------------------ RNG


def capture_rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every RNG a training step can touch, in a form `torch.load(weights_only=True)` accepts."""
    import numpy as np
    import torch

    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_name, torch.from_numpy(np.asarray(np_keys, dtype=np.int64)), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def restore_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    import numpy as np
    import torch

    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])


# ------------------------------------------------------------------ stage completion


def mark_stage_complete(out_dir: str | Path, info: dict[str, Any]) -> None:
    """Written after the released artefact is exported: the stage needs no more work."""
    write_json_atomic(Path(out_dir) / COMPLETE_MARKER, info)


def is_stage_complete(out_dir: str | Path) -> bool:
    return (Path(out_dir) / COMPLETE_MARKER).is_file()


def clear_stage_complete(out_dir: str | Path) -> None:
    (Path(out_dir) / COMPLETE_MARKER).unlink(missing_ok=True)
