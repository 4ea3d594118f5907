"""Two real processes (`accelerate launch --multi_gpu --num_processes 2`, gloo on CPU), each with two
DataLoader workers, train over a webdataset-layout dataset: every sample is seen exactly once per epoch,
by exactly one (process, worker). (The kill-and-resume of such a run is in test_resume.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.clip_data import write_tiny_clip_dataset
from latentdiff.data.shards import pack_webdataset

pytestmark = pytest.mark.slow

HELPER = Path(__file__).resolve().parents[1] / "helpers" / "count_shard_samples.py"
NUM_TRAIN, BATCH_SIZE, PROCESSES, WORKERS, EPOCHS = 48, 4, 2, 2, 2


def test_two_processes_see_every_shard_sample_once_per_epoch(tmp_path):
    data = write_tiny_clip_dataset(tmp_path / "data", num_train=NUM_TRAIN, num_validation=4)
    pack_webdataset(data, samples_per_shard=10)
    out = tmp_path / "out"
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [str(accelerate), "launch", "--multi_gpu", "--num_processes", str(PROCESSES), "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", str(HELPER), str(data), str(out), str(EPOCHS),
               str(BATCH_SIZE), str(WORKERS)]
    tests_dir = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (tests_dir, os.environ.get("PYTHONPATH")) if p)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    per_epoch = NUM_TRAIN // PROCESSES  # samples each process sees per epoch (48 = 2 x 6 batches of 4: none dropped)
    seen = {rank: [json.loads(line) for line in (out / f"seen-rank{rank}.jsonl").read_text().splitlines()]
            for rank in range(PROCESSES)}
    assert all(len(lines) == EPOCHS * per_epoch for lines in seen.values())
    for epoch in range(EPOCHS):
        owners: dict[int, tuple[int, int]] = {}
        for rank, lines in seen.items():
            for line in lines[epoch * per_epoch:(epoch + 1) * per_epoch]:
                assert line["index"] not in owners, f"sample {line['index']} seen twice in epoch {epoch}"
                owners[line["index"]] = (rank, line["worker"])
        assert sorted(owners) == list(range(NUM_TRAIN))
        assert set(owners.values()) == {(r, w) for r in range(PROCESSES) for w in range(WORKERS)}
