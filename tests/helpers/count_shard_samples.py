"""Run under `accelerate launch --num_processes 2` by tests/e2e/test_shards_multiprocess.py: the real
training loop (sampler, DataLoader workers, DDP over gloo) over a webdataset-layout dataset, with a
linear model on the pixels; each process writes which sample every step saw, and which DataLoader
worker loaded it, one JSON line per sample to OUT/seen-rank{R}.jsonl.

    python count_shard_samples.py DATA OUT EPOCHS BATCH_SIZE NUM_WORKERS
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from latentdiff.config import TrainConfig
from latentdiff.data.prepared import ImageCaptionDataset, open_prepared
from latentdiff.runtime import process_state
from latentdiff.training.loop import train


class TracedImages(torch.utils.data.Dataset):
    def __init__(self, images: ImageCaptionDataset):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        info = torch.utils.data.get_worker_info()
        return {**self.images[index], "worker": -1 if info is None else info.id}


class CountingTask:
    name = "count"

    def __init__(self, data: str, out: Path):
        self.images = ImageCaptionDataset(open_prepared(data), "train")
        size = self.images[0]["pixel_values"].numel()
        torch.manual_seed(0)
        self.model = torch.nn.Linear(size, 1)
        self.log = out / f"seen-rank{process_state().process_index}.jsonl"

    def trainable_module(self):
        return self.model

    def train_dataset(self):
        return TracedImages(self.images)

    def collate(self, items):
        return {"pixel_values": torch.stack([i["pixel_values"] for i in items]),
                "index": torch.tensor([i["index"] for i in items]), "worker": torch.tensor([i["worker"] for i in items])}

    def loss(self, model, batch, generator):
        with open(self.log, "a", encoding="utf-8") as fh:
            for index, worker in zip(batch["index"].tolist(), batch["worker"].tolist()):
                fh.write(json.dumps({"index": index, "worker": worker}) + "\n")
        return model(batch["pixel_values"].flatten(1)).pow(2).mean(), {}

    def validate(self, model, step, out_dir):
        return {}

    def export(self, model, out_dir):
        pass


def main(argv: list[str]) -> None:
    data, out, epochs, batch_size, num_workers = argv[0], Path(argv[1]), int(argv[2]), int(argv[3]), int(argv[4])
    out.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig(data=data, out=str(out), epochs=epochs, batch_size=batch_size, lr=1e-3, num_workers=num_workers,
                      checkpoint_every=0)
    train(CountingTask(data, out), cfg, out)


if __name__ == "__main__":
    main(sys.argv[1:])
