#!/usr/bin/env bash
# COCO captions (118k training images, 5 captions each) at 256x256, trained from scratch with the `base`
# presets (CLIP ViT-B/32-sized, Stable Diffusion's VAE and U-Net sizes), as webdataset shards:
#
#   bash runs/coco.sh COCO_DIR [WORK_DIR]
#
# COCO_DIR holds annotations/captions_{train,val}2017.json and train2017/, val2017/ (what `latentdiff
# prepare-data coco` reads). On GPUs set LAUNCH to an accelerate launcher, e.g. one node with 8 GPUs:
#
#   LAUNCH="accelerate launch --config_file configs/accelerate/1node-Ngpu.yaml -m" bash runs/coco.sh /data/coco
#
# (several nodes: configs/accelerate/Mnode-Ngpu.yaml or configs/slurm/train_multinode.sbatch; docs/scaling.md).
# Cost: "COCO cost" in the README: about 6.5 H100-hours at 40% MFU for these epochs (derived from counted
# FLOPs by benchmarks/bench_coco_cost.py, not measured on a GPU).
# Every step resumes: prepare-data is skipped once WORK_DIR/data exists, `latentdiff train` continues the
# interrupted stage from its last checkpoint (with the same number of processes).
set -euo pipefail

COCO="${1:?usage: bash runs/coco.sh COCO_DIR [WORK_DIR]}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${2:-$REPO/runs/coco}"
PYTHON="${PYTHON:-python}"
LAUNCH="${LAUNCH:-$PYTHON -m}"

# 118 shards of 1,000 images (~10 GB of PNGs at 256 px): one process packs them; training reads them.
if [ ! -f "$WORK/data/manifest.json" ]; then
  "$PYTHON" -m latentdiff prepare-data coco "$COCO" --out "$WORK/data" --image-size 256 --format webdataset \
    --samples-per-shard 1000
fi

# Steps per stage at the stages' default batch sizes per process (CLIP 32, VAE 16, U-Net 32), chosen for 8
# processes: 30 CLIP epochs, 10 VAE epochs, 100 U-Net epochs of the 118,287 training images (with P
# processes each step sees P x the batch: scale the steps by 8/P to keep the epochs).
# bf16 where the GPU has it; gradient checkpointing keeps the 853M-parameter U-Net's activations small.
$LAUNCH latentdiff train --data "$WORK/data" --out "$WORK/run" --preset base \
  --mixed-precision "${MIXED_PRECISION:-bf16}" --gradient-checkpointing --num-workers "${NUM_WORKERS:-8}" \
  --clip-max-steps "${CLIP_STEPS:-13900}" --vae-max-steps "${VAE_STEPS:-9250}" --unet-max-steps "${UNET_STEPS:-46200}"

"$PYTHON" -m latentdiff evaluate --model "$WORK/run/pipeline" --data "$WORK/data"
