#!/usr/bin/env bash
# The recipe of latentdiff's bundled default model (src/latentdiff/default_model/), from nothing:
#   1. the built-in emoji dataset at 64x64 with captions in all 14 languages of the `emoji` package
#   2. `latentdiff train --preset small`: CLIP (text + vision towers), then the VAE, then the U-Net
#   3. scripts/bundle_default_model.py: the pipeline (+ the CLIP folder, for CLIP retrieval) into the
#      package folder as fp16 safetensors.
#
#   bash runs/default.sh [WORK_DIR]        (default WORK_DIR: runs/default/, git-ignored; rerun to resume)
#
# Every step resumes: prepare-data is skipped when WORK_DIR/data exists, `latentdiff train` skips
# finished stages and continues the interrupted one from its last checkpoint.
#
# Threads: torch uses OMP_NUM_THREADS (default here: all cores). On a CPU shared with other jobs set
# OMP_NUM_THREADS=1: two threads per process thrash when another process holds a core (measured 3.5x
# slower, see the preset comments in src/latentdiff/config.py).
#
# Wall time: 43 min from nothing (prepare-data ~10 s, CLIP 8.5 min at 75 samples/s, VAE 13.3 min at
# 5.0 samples/s, U-Net cache 1.7 min + 18.9 min at 42 samples/s, export + bundle ~1 min), 2026-11-27, on the
# 2-core AMD EPYC development VM (CPU only, fp32, OMP_NUM_THREADS=1, nice 5) while other jobs shared it
# (load average 2-5). The result is a weak model: see the README's evaluation table. The VAE is the limit
# (16 dB PSNR after these 250 steps: shapes right, colours washed out); more VAE and U-Net steps, or a GPU,
# are what it needs.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-$REPO/runs/default}"
PYTHON="${PYTHON:-python}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"

# Optimizer steps of each stage (batch sizes are the stages' defaults: CLIP 32, VAE 16, U-Net 32;
# the training split is 3,382 images):
CLIP_STEPS=1200   # 38,400 image-caption pairs, ~11 epochs
VAE_STEPS=250     # 4,000 images, ~1.2 epochs
UNET_STEPS=1500   # 48,000 latents, ~14 epochs

start=$(date +%s)
echo "default model recipe: work dir $WORK, $OMP_NUM_THREADS torch thread(s), started $(date -u '+%Y-%m-%d %H:%M UTC')"

if [ ! -f "$WORK/data/manifest.json" ]; then
  "$PYTHON" -m latentdiff prepare-data emoji --languages all --image-size 64 --out "$WORK/data"
fi

"$PYTHON" -m latentdiff train --preset small --data "$WORK/data" --out "$WORK/run" --seed 0 \
  --clip-max-steps "$CLIP_STEPS" --vae-max-steps "$VAE_STEPS" --unet-max-steps "$UNET_STEPS"

"$PYTHON" "$REPO/scripts/bundle_default_model.py" --run "$WORK/run" --out "$REPO/src/latentdiff/default_model"

echo "default model recipe: done in $(( ($(date +%s) - start) / 60 )) min"
