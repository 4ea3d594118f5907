"""On-disk caches of what the frozen VAE and text encoder make of a dataset split, computed once.

Training the U-Net never changes the VAE or the text encoder, so encoding every image and caption once
(instead of at every step of every epoch) removes most of the per-step cost of a small U-Net (see
`benchmarks/bench_train_unet.py`). One safetensors file per split holds:

    latent_mean, latent_std  (N, C, h, w) float32  the VAE posterior N(mean, std^2) of each image, unscaled
    caption_index            (N, K) int64          rows of `text_embeddings` for the image's captions, -1 = none
    text_embeddings          (M, L, D) float16     CLIP text encoder last hidden state of every distinct
                                                   caption, padded to the tokenizer's max length as the
                                                   pipeline does; row 0 is the empty prompt (caption dropout)

Why mean AND std: Stable Diffusion trains on `latent_dist.sample()`, a fresh draw per step; keeping the
posterior's std lets us draw z = mean + std * eps with the training generator, so the U-Net sees the same
distribution the decoder was trained to decode (and a little free augmentation), for 2x the disk of
the mean alone (4 KiB per 64x64 image at 4x16x16).
Why float16 embeddings: a split of 19,000 captions x 77 tokens x 256 dims is 1.5 GB in float32; the
embeddings are LayerNorm outputs (|x| in the tens at most) whose float16 rounding (relative 5e-4) is far
below what caption dropout and timestep noise already vary.

The file name carries a hash of everything that produced it (VAE weights + config, text encoder weights +
config, tokenizer, the dataset's manifest and the split's metadata, the image size, this format's
version), so a second run, or a later epoch, reuses it, and a changed VAE or dataset makes a new one.
Multi-process: the main process builds while the others wait (`main_process_first`), then all read it.
Concurrent runs (two trainings started on the same data at once) take a file lock beside the cache: the
first builds, the second waits for it and then reads the same file instead of building it again.
Resumable: the build writes chunks of CHUNK_BATCHES encode batches, each atomically, into a folder beside
the file, so a build killed after minutes continues from its last chunk instead of starting again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock, Timeout
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from latentdiff.data.prepared import MANIFEST_FILENAME, METADATA_FILENAME, ImageCaptionDataset, PreparedDataset
from latentdiff.errors import UserError
from latentdiff.hashing import update_with_file
from latentdiff.runtime import process_state

CACHE_FORMAT_VERSION = 1
EMPTY_PROMPT = ""
EMPTY_PROMPT_ROW = 0  # text_embeddings[0] is always the empty prompt
ENCODE_BATCH_SIZE = 32  # images / captions per forward pass while building
# Encode batches per chunk file while building (512 items): a killed build loses at most one chunk of work
# (~20 s of a 5,915-image build that took 4 min under load) and resumes from the chunks on disk.
CHUNK_BATCHES = 16
EMBEDDING_DTYPE = torch.float16
DEFAULT_CACHE_SUBDIR = ".latentdiff-cache"  # inside the dataset folder: the cache belongs to the data


@dataclass
class EncodedSplit:
    latent_mean: torch.Tensor  # (N, C, h, w) float32, unscaled VAE posterior mean
    latent_std: torch.Tensor  # (N, C, h, w) float32
    caption_index: torch.Tensor  # (N, K) int64, -1 padded
    text_embeddings: torch.Tensor  # (M, L, D) float16, row 0 = empty prompt
    path: Path
    built: bool  # False when it was read from an earlier run's file

    def __len__(self) -> int:
        return self.latent_mean.shape[0]


# ------------------------------------------------------------------------------------ keys


# Config entries that say where or with which library version a model was loaded, not what it computes:
# the same weights copied to another folder must hit the same cache.
_CONFIG_KEYS_IGNORED = frozenset({"_name_or_path", "_commit_hash", "transformers_version", "_diffusers_version",
                                  "_use_default_values"})


def _hash_module(digest: "hashlib._Hash", module: torch.nn.Module) -> None:
    config = module.config.to_dict() if hasattr(module.config, "to_dict") else dict(module.config)
    config = {k: v for k, v in config.items() if k not in _CONFIG_KEYS_IGNORED}
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())


def cache_key(vae, text_encoder, tokenizer, dataset: PreparedDataset, split: str) -> str:
    """A hex digest of everything the cached tensors depend on."""
    digest = hashlib.sha256(f"latentdiff-cache-v{CACHE_FORMAT_VERSION}:{split}:{dataset.image_size}".encode())
    _hash_module(digest, vae)
    _hash_module(digest, text_encoder)
    digest.update(tokenizer.backend_tokenizer.to_str().encode())
    digest.update(f"max_length={tokenizer.model_max_length}".encode())
    digest.update((dataset.root / MANIFEST_FILENAME).read_bytes())
    metadata = dataset.root / split / METADATA_FILENAME
    if metadata.exists():
        update_with_file(digest, metadata)  # in blocks: a COCO-sized metadata file need not be in memory at once
    return digest.hexdigest()


# ------------------------------------------------------------------------------------ encoding


def pipeline_token_ids(tokenizer, prompts: list[str]) -> torch.Tensor:
    """(len(prompts), L) input ids exactly as StableDiffusionPipeline.encode_prompt makes them: padded to
    model_max_length, truncated (it passes the text encoder no attention mask)."""
    return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


@torch.no_grad()
def encode_prompts(text_encoder, tokenizer, prompts: list[str]) -> torch.Tensor:
    """(len(prompts), L, D) last hidden states of the pipeline's tokens, so training sees what generation sees."""
    device = next(text_encoder.parameters()).device
    return text_encoder(pipeline_token_ids(tokenizer, prompts).to(device))[0]


@torch.no_grad()
def encode_latents(vae, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """VAE latents: (B, 3, H, W) in [-1, 1] -> posterior (mean, std), each (B, C, H/f, W/f), unscaled."""
    device = next(vae.parameters()).device
    posterior = vae.encode(pixel_values.to(device)).latent_dist
    return posterior.mean, posterior.std


def _unwritable(path: Path, err: OSError) -> UserError:
    return UserError(f"Could not write the latent cache to {path.parent} ({err.strerror or err}); pass "
                     f"--cache-dir a writable folder with free space.")


def _save_atomic(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file under a temporary name, then rename it: a reader (or a resumed build)
    sees the whole file or none. A full or read-only disk ends in one sentence."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise _unwritable(path, err) from None


def index_captions(captions_per_image: list[list[str]]) -> tuple[list[str], torch.Tensor]:
    """(the distinct captions, the empty prompt first at EMPTY_PROMPT_ROW and the rest sorted; caption_index
    (N, K) int64: image i's captions as rows of that list, -1 past its last caption)."""
    distinct = [EMPTY_PROMPT] + sorted({c for caps in captions_per_image for c in caps} - {EMPTY_PROMPT})
    row_of = {caption: row for row, caption in enumerate(distinct)}
    width = max(len(caps) for caps in captions_per_image)
    caption_index = torch.full((len(captions_per_image), width), -1, dtype=torch.int64)
    for i, caps in enumerate(captions_per_image):
        caption_index[i, :len(caps)] = torch.tensor([row_of[c] for c in caps], dtype=torch.int64)
    return distinct, caption_index


def _chunks(count: int) -> list[tuple[int, int]]:
    """[start, stop) of each chunk of `count` items; chunks hold whole encode batches, so the batches (and
    so the numbers) are the same as an uninterrupted build's."""
    size = ENCODE_BATCH_SIZE * CHUNK_BATCHES
    return [(start, min(start + size, count)) for start in range(0, count, size)]


def _build(vae, text_encoder, tokenizer, dataset: PreparedDataset, split: str, desc: str,
           parts_dir: Path) -> dict[str, torch.Tensor]:
    """Encode the split chunk by chunk into `parts_dir` (one file per chunk, written atomically), skipping
    the chunks an earlier, interrupted build already wrote; then return the whole split's tensors."""
    images = ImageCaptionDataset(dataset, split)
    distinct, caption_index = index_captions([record.captions for record in images.records])

    def encode_image_chunk(start: int, stop: int) -> dict[str, torch.Tensor]:
        means, stds = [], []
        for first in range(start, stop, ENCODE_BATCH_SIZE):
            batch = torch.stack([images[i]["pixel_values"] for i in range(first, min(first + ENCODE_BATCH_SIZE, stop))])
            mean, std = encode_latents(vae, batch)
            means.append(mean.float().cpu())
            stds.append(std.float().cpu())
            bar.update(len(batch))
        return {"latent_mean": torch.cat(means).contiguous(), "latent_std": torch.cat(stds).contiguous()}

    def encode_text_chunk(start: int, stop: int) -> dict[str, torch.Tensor]:
        embeddings = []
        for first in range(start, stop, ENCODE_BATCH_SIZE):
            chunk = distinct[first:min(first + ENCODE_BATCH_SIZE, stop)]
            embeddings.append(encode_prompts(text_encoder, tokenizer, chunk).to("cpu", EMBEDDING_DTYPE))
            bar.update(len(chunk))
        return {"text_embeddings": torch.cat(embeddings).contiguous()}

    jobs = [(parts_dir / f"{kind}-{index:06d}.safetensors", start, stop, encode)
            for kind, count, encode in (("images", len(images), encode_image_chunk), ("text", len(distinct), encode_text_chunk))
            for index, (start, stop) in enumerate(_chunks(count))]
    done = sum(stop - start for file, start, stop, _ in jobs if file.exists())
    if done:
        print(f"{desc}: resuming an interrupted build, {done} of {len(images) + len(distinct)} items already encoded",
              flush=True)
    with tqdm(total=len(images) + len(distinct), initial=done, desc=desc, unit="item", dynamic_ncols=True) as bar:
        for file, start, stop, encode in jobs:
            if not file.exists():
                _save_atomic(encode(start, stop), file)
    parts = [load_file(str(file)) for file, *_ in jobs]
    return {"latent_mean": torch.cat([p["latent_mean"] for p in parts if "latent_mean" in p]).contiguous(),
            "latent_std": torch.cat([p["latent_std"] for p in parts if "latent_std" in p]).contiguous(),
            "caption_index": caption_index,
            "text_embeddings": torch.cat([p["text_embeddings"] for p in parts if "text_embeddings" in p]).contiguous()}


@contextmanager
def _build_lock(path: Path):
    """An inter-process lock on one cache file's build (`.<name>.lock` beside it, left in place: removing a
    lock file another process may be opening is itself a race). Without it two runs started at once on the
    same data both build, and the first to finish removes the chunk folder the second is still reading."""
    lock = FileLock(str(path.with_name(f".{path.stem}.lock")))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            print(f"waiting for another run that is building the latent cache {path.name} (in {path.parent}); "
                  f"this run reads it when that is done", flush=True)
            lock.acquire()
    except OSError as err:
        raise _unwritable(path, err) from None
    try:
        yield
    finally:
        lock.release()


def cache_path(cache_dir: Path, split: str, key: str) -> Path:
    return cache_dir / f"{split}-{key[:24]}.safetensors"


def load_or_build(vae, text_encoder, tokenizer, dataset: PreparedDataset, split: str,
                  cache_dir: str | Path | None = None) -> EncodedSplit:
    """The encoded split: read from `cache_dir` when an identical one was built before, else built (by the
    main process; others wait for it) and written atomically (temporary file, then rename). A build that
    was killed resumes from its last finished chunk (`.<name>.parts/` beside the file, removed once done)."""
    cache_dir = Path(cache_dir) if cache_dir else dataset.root / DEFAULT_CACHE_SUBDIR
    key = cache_key(vae, text_encoder, tokenizer, dataset, split)
    path = cache_path(cache_dir, split, key)
    parts_dir = path.with_name(f".{path.stem}.parts")  # the key is in the name: parts of another VAE never mix
    built = False
    with process_state().main_process_first():
        if not path.exists():
            with _build_lock(path):
                if not path.exists():  # another run may have finished it while this one waited
                    tensors = _build(vae, text_encoder, tokenizer, dataset, split,
                                     f"caching {split} latents + text", parts_dir)
                    _save_atomic(tensors, path, metadata={"key": key, "split": split, "dataset": str(dataset.root),
                                                          "format_version": str(CACHE_FORMAT_VERSION)})
                    shutil.rmtree(parts_dir, ignore_errors=True)
                    built = True
    tensors = load_file(str(path))
    return EncodedSplit(latent_mean=tensors["latent_mean"], latent_std=tensors["latent_std"],
                        caption_index=tensors["caption_index"], text_embeddings=tensors["text_embeddings"],
                        path=path, built=built)
