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
# Cost: see "COCO cost" in the README (about 100 H100-hours at 40% MFU for this recipe, derived, not measured).
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

# Steps per stage at the stages' default batch sizes per process; with P processes each step sees P x that.
# bf16 where the GPU has it; gradient checkpointing lets the 860M-parameter U-Net take batch 32 on 80 GB.
$LAUNCH latentdiff train --data "$WORK/data" --out "$WORK/run" --preset base \
  --mixed-precision "${MIXED_PRECISION:-bf16}" --gradient-checkpointing --num-workers "${NUM_WORKERS:-8}" \
  --clip-max-steps "${CLIP_STEPS:-20000}" --vae-max-steps "${VAE_STEPS:-20000}" --unet-max-steps "${UNET_STEPS:-100000}"

"$PYTHON" -m latentdiff evaluate --model "$WORK/run/pipeline" --data "$WORK/data"
