"""Hashes of files and models: the one place that reads weights to fingerprint them.

- `files_sha256(paths)`: one SHA-256 over files' bytes in the given order (streamed, 1 MiB at a time);
- `model_hash(pipeline_dir)`: AUTOMATIC1111's short model hash of a pipeline folder (PNG infotext, APIs);
- `folder_hash(dir)`: the same short form over any folder's safetensors (a CLIP or VAE folder in reports);
- `pipeline_hash(pipeline_dir)`: the weights and every file beside them that changes the pictures (configs,
  tokenizer, scheduler): what a cached export is keyed by.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Iterable

SHORT_HASH_LENGTH = 10  # AUTOMATIC1111's shorthash
HASHED_COMPONENTS = ("unet", "vae", "text_encoder")
# The folders whose other files (configs, vocabulary, merges) change what the same weights draw
CONFIGURED_COMPONENTS = HASHED_COMPONENTS + ("tokenizer", "scheduler")
CHUNK_BYTES = 1 << 20


def update_with_file(digest, path: Path) -> None:
    """Feed a file's bytes into `digest` (a hashlib object), CHUNK_BYTES at a time: big files never sit in
    memory whole."""
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)


def files_sha256(paths: Iterable[Path]) -> str:
    """Hex SHA-256 of the files' contents fed one after another."""
    digest = hashlib.sha256()
    for path in paths:
        update_with_file(digest, path)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    return files_sha256([path])


def folder_hash(path: Path, pattern: str = "**/*.safetensors") -> str:
    """The short hash over a folder's weight files in sorted order: the same weights give the same hash."""
    return files_sha256(sorted(Path(path).glob(pattern)))[:SHORT_HASH_LENGTH]


def weight_files(model_dir: str | Path) -> list[Path]:
    """The safetensors files of a pipeline folder's U-Net, VAE and text encoder, in hashing order."""
    model_dir = Path(model_dir)
    files: list[Path] = []
    for component in HASHED_COMPONENTS:
        files.extend(sorted((model_dir / component).glob("*.safetensors")))
    return files


def model_hash(model_dir: str | Path) -> str:
    """AUTOMATIC1111's short model hash (first 10 hex digits of a SHA-256) over the weight files.

    AUTOMATIC1111 hashes the one checkpoint file; a diffusers folder splits the weights into one file
    per component, so we feed the U-Net's, the VAE's and the text encoder's files into one SHA-256 in
    that order. Same weights -> same hash; any changed weight -> a different hash.
    """
    return model_sha256(model_dir)[:SHORT_HASH_LENGTH]


def model_sha256(model_dir: str | Path) -> str:
    """The full SHA-256 (hex) that `model_hash` shortens (A1111's `sha256` field of a model)."""
    files = weight_files(model_dir)
    stamp = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    return _hash_files(stamp)


def pipeline_hash(model_dir: str | Path) -> str:
    """Short SHA-256 over the weights (as `model_sha256`) and every other file of the pipeline's components
    plus its top-level JSON files (`model_index.json`, `latentdiff_model.json`), with their relative paths: two
    folders with the same weights and another tokenizer, scheduler or config get different hashes, so neither
    is handed the other's export."""
    model_dir = Path(model_dir)
    digest = hashlib.sha256(model_sha256(model_dir).encode())
    candidates = [*sorted(model_dir.glob("*.json")),
                  *(path for component in CONFIGURED_COMPONENTS for path in sorted((model_dir / component).rglob("*")))]
    for path in candidates:
        if path.is_file() and path.suffix != ".safetensors":  # the weights are in model_sha256 already
            digest.update(path.relative_to(model_dir).as_posix().encode() + b"\0")
            update_with_file(digest, path)
    return digest.hexdigest()[:SHORT_HASH_LENGTH]


@lru_cache(maxsize=64)
def _hash_files(stamp: tuple[tuple[str, int, int], ...]) -> str:
    # keyed by (path, size, mtime) so a big model is hashed once per process
    return files_sha256(Path(path) for path, _, _ in stamp)
