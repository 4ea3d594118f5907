"""Seeded, resumable data order for the training loop.

Epoch `e` visits the training items in the order `randperm(n, seed=seed + e)`; process `rank` of
`world_size` takes every `world_size`-th index of it (as torch's DistributedSampler does), and the shard
is cut into batches of `batch_size`, the incomplete last batch dropped (a contrastive batch of one
teaches nothing). The position in the stream is just (epoch, batches already taken this epoch), so a
resumed run starts exactly where the checkpoint was taken without reading the skipped items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

from latentdiff.errors import UserError


@dataclass
class StreamPosition:
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of this process already consumed in `epoch`


class EpochBatches(torch.utils.data.Sampler):
    """The batches of one epoch for one process, starting at `first_batch`."""

    def __init__(self, batches: list[list[int]], first_batch: int):
        self.batches = batches[first_batch:]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def batches_per_epoch(num_items: int, batch_size: int, world_size: int) -> int:
    return (num_items // world_size) // batch_size


def epoch_batches(num_items: int, batch_size: int, seed: int, epoch: int, rank: int, world_size: int) -> list[list[int]]:
    order = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
    shard_len = num_items // world_size  # equal shards: every process takes the same number of steps
    shard = order[rank::world_size][:shard_len]
    count = shard_len // batch_size
    return [shard[i * batch_size:(i + 1) * batch_size] for i in range(count)]


class BatchStream:
    """An endless iterator of collated batches over epochs, whose position can be saved and restored."""

    def __init__(self, dataset: Any, collate: Callable, batch_size: int, seed: int, rank: int, world_size: int,
                 num_workers: int = 0, position: StreamPosition | None = None):
        self.dataset, self.collate = dataset, collate
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.num_workers = num_workers
        self.position = position or StreamPosition()
        self.num_batches = batches_per_epoch(len(dataset), batch_size, world_size)
        if self.num_batches == 0:
            raise UserError(f"The training split has {len(dataset)} items, fewer than one batch of {batch_size} "
                            f"per process ({world_size} process(es)); lower --batch-size or prepare more images.")
        self._iterator: Iterator | None = None

    def _open_epoch(self) -> Iterator:
        batches = epoch_batches(len(self.dataset), self.batch_size, self.seed, self.position.epoch, self.rank, self.world_size)
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=EpochBatches(batches, self.position.batch_in_epoch), collate_fn=self.collate,
            num_workers=self.num_workers,
            # A private generator: creating an iterator must not draw from the global torch RNG, or a
            # resumed run (which opens its iterator mid-epoch) would shift every later random number.
            generator=torch.Generator().manual_seed(self.seed + self.position.epoch),
        )
        return iter(loader)

    def __iter__(self) -> "BatchStream":
        return self

    def __next__(self) -> dict[str, Any]:
        if self.position.batch_in_epoch >= self.num_batches:
            self.position = StreamPosition(self.position.epoch + 1, 0)
            self._iterator = None
        if self._iterator is None:
            self._iterator = self._open_epoch()
        batch = next(self._iterator)
        self.position.batch_in_epoch += 1
        return batch

    def state(self) -> dict[str, int]:
        return {"epoch": self.position.epoch, "batch_in_epoch": self.position.batch_in_epoch}
