"""Per-shard caches of latents and text embeddings, read lazily: RAM use independent of dataset size.

The one-file cache (`latentdiff.data.cache`) holds a split's latents and every caption's embedding in
memory: at COCO scale (590k captions x 77 tokens x 512 dims in float16) that is 46 GB. For a dataset
in the webdataset layout (`latentdiff.data.shards`) train-unet instead writes one safetensors file per
dataset shard, each built by one process (process r of R encodes shards r, r+R, ...; all of them wait
for the rest, then read), and reads single samples from the files memory-mapped (safetensors
`safe_open(...).get_slice`), so a step touches only its batch. One file per shard holds:

    latent_mean, latent_std  (n, C, h, w) float32  the VAE posterior of the shard's n images, unscaled
    caption_index            (n, K) int64          rows of this file's `text_embeddings`, -1 = none
    text_embeddings          (m, L, D) float16     the shard's distinct captions; row 0 = the empty prompt

Files live in `CACHE_DIR/{split}-{key}.shards/`, keyed as the one-file cache (`cache.cache_key`): a
changed VAE, text encoder, tokenizer or dataset makes a new folder. Each file is written atomically, so
a killed build resumes at the first missing shard.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from tqdm.auto import tqdm

from latentdiff.data.cache import (DEFAULT_CACHE_SUBDIR, EMBEDDING_DTYPE, EMPTY_PROMPT_ROW, ENCODE_BATCH_SIZE,
                                   _save_atomic, cache_key, encode_latents, encode_prompts, index_captions)
from latentdiff.data.prepared import ImageRecord, PreparedDataset, iter_split, pixel_values
from latentdiff.runtime import process_state

SHARD_FILE = "shard-{:06d}.safetensors"
# Shard files a reader keeps open (memory-mapped) at once: pages it touched count in its RSS while the
# file stays mapped, so an epoch over every shard would otherwise map the whole cache.
MAX_OPEN_SHARDS = 4


def is_sharded(dataset: PreparedDataset) -> bool:
    return dataset.manifest.get("format") == "webdataset"


def split_shards(dataset: PreparedDataset, split: str):
    """(start index, the shard's records) per dataset shard, streamed from metadata.jsonl: one shard's
    records in memory at a time."""
    start, records = 0, []
    for record in iter_split(dataset.root, split):
        if records and record.shard != records[0].shard:
            yield start, records
            start, records = start + len(records), []
        records.append(record)
    if records:
        yield start, records


@torch.no_grad()
def encode_shard(vae, text_encoder, tokenizer, records: list[ImageRecord]) -> dict[str, torch.Tensor]:
    """The cache file's tensors for one shard's records (see the module docstring)."""
    distinct, caption_index = index_captions([record.captions for record in records])
    means, stds, embeddings = [], [], []
    for first in range(0, len(records), ENCODE_BATCH_SIZE):
        batch = torch.stack([pixel_values(record) for record in records[first:first + ENCODE_BATCH_SIZE]])
        mean, std = encode_latents(vae, batch)  # (B, C, h, w) each
        means.append(mean.float().cpu())
        stds.append(std.float().cpu())
    for first in range(0, len(distinct), ENCODE_BATCH_SIZE):
        chunk = distinct[first:first + ENCODE_BATCH_SIZE]
        embeddings.append(encode_prompts(text_encoder, tokenizer, chunk).to("cpu", EMBEDDING_DTYPE))  # (b, L, D)
    return {"latent_mean": torch.cat(means).contiguous(), "latent_std": torch.cat(stds).contiguous(),
            "caption_index": caption_index, "text_embeddings": torch.cat(embeddings).contiguous()}


class ShardedCache(torch.utils.data.Dataset):
    """The cached split as a map dataset. Item i: {"latent_mean", "latent_std": (C, h, w) float32,
    "caption_embeddings": (K, L, D) float16 (zero rows past the image's captions), "num_captions": int},
    read from the memory-mapped shard file on demand. Picklable for DataLoader workers (open files are
    reopened in each worker)."""

    def __init__(self, folder: Path, ranges: list[tuple[int, int]], max_captions: int, built: bool):
        self.folder, self.ranges, self.max_captions, self.built = Path(folder), ranges, max_captions, built
        self._starts = torch.tensor([start for start, _ in ranges])
        self._open: dict[int, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_open": {}}

    def __len__(self) -> int:
        return self.ranges[-1][1] if self.ranges else 0

    def _file(self, shard: int):
        if shard not in self._open:
            if len(self._open) >= MAX_OPEN_SHARDS:
                del self._open[next(iter(self._open))]  # the least recently opened: unmapped
            self._open[shard] = safe_open(str(self.folder / SHARD_FILE.format(shard)), framework="pt")
        return self._open[shard]

    def empty_prompt_embedding(self) -> torch.Tensor:
        """(L, D) float16: the empty prompt's embedding (caption dropout)."""
        return self._file(0).get_slice("text_embeddings")[EMPTY_PROMPT_ROW:EMPTY_PROMPT_ROW + 1][0]

    def __getitem__(self, index: int) -> dict[str, Any]:
        shard = int(torch.searchsorted(self._starts, torch.tensor(index), right=True)) - 1
        j = index - self.ranges[shard][0]
        file = self._file(shard)
        rows = file.get_slice("caption_index")[j:j + 1][0].tolist()
        embeddings = file.get_slice("text_embeddings")
        chosen = [embeddings[row:row + 1][0] for row in rows if row >= 0]  # (L, D) each
        padded = torch.zeros((self.max_captions,) + tuple(chosen[0].shape), dtype=chosen[0].dtype)
        padded[:len(chosen)] = torch.stack(chosen)
        return {"latent_mean": file.get_slice("latent_mean")[j:j + 1][0],
                "latent_std": file.get_slice("latent_std")[j:j + 1][0],
                "caption_embeddings": padded, "num_captions": len(chosen)}

    @staticmethod
    def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return {"latent_mean": torch.stack([i["latent_mean"] for i in items]),  # (B, C, h, w)
                "latent_std": torch.stack([i["latent_std"] for i in items]),  # (B, C, h, w)
                "caption_embeddings": torch.stack([i["caption_embeddings"] for i in items]),  # (B, K, L, D)
                "num_captions": torch.tensor([i["num_captions"] for i in items], dtype=torch.int64)}  # (B,)


def load_or_build_sharded(vae, text_encoder, tokenizer, dataset: PreparedDataset, split: str,
                          cache_dir: str | Path | None = None) -> ShardedCache:
    """The split's sharded cache: each process encodes its share of the missing shard files, then all
    wait for each other and read the files lazily."""
    state = process_state()
    cache_dir = Path(cache_dir) if cache_dir else dataset.root / DEFAULT_CACHE_SUBDIR
    key = cache_key(vae, text_encoder, tokenizer, dataset, split)
    folder = cache_dir / f"{split}-{key[:24]}.shards"
    ranges, max_captions, built = [], 0, 0
    with tqdm(desc=f"caching {split} latents + text (process {state.process_index} of {state.num_processes})",
              unit="img", dynamic_ncols=True) as bar:
        for number, (start, records) in enumerate(split_shards(dataset, split)):
            ranges.append((start, start + len(records)))
            max_captions = max(max_captions, *(len(r.captions) for r in records))
            file = folder / SHARD_FILE.format(number)
            if number % state.num_processes != state.process_index or file.exists():
                continue  # another process's shard, or built before
            _save_atomic(encode_shard(vae, text_encoder, tokenizer, records), file,
                         metadata={"key": key, "split": split, "start": str(start), "stop": str(start + len(records))})
            built += 1
            bar.update(len(records))
    state.wait_for_everyone()
    return ShardedCache(folder, ranges, max_captions, built=built > 0)
