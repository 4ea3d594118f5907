#!/usr/bin/env bash
# The emoji recipe at GPU speed: the whole chain (CLIP, VAE, U-Net) from nothing in a 10-minute speedrun on
# one CUDA GPU, then the speedrun's measurement (prompt fidelity on training and held-out emoji in six
# languages, VAE colour error), written to benchmarks/results/speedrun/gpu-emoji-<BUDGET>min.json.
#
#   bash runs/gpu_emoji.sh [WORK_DIR] [BUDGET_MIN]      (defaults: runs/gpu-emoji/, 10 minutes)
#
# Why a GPU script: on the 2-core CPU the same recipe draws 50 training emoji recognisably after about 2,500
# passes over each image, and the whole split (3,382 images) would need about 55 hours of one core
# (docs/speedrun/emoji-unet-passes.md, "Can the U-Net draw its training emoji at all?"). A GPU gives those passes in minutes,
# so this recipe spends them on a wider, deeper U-Net at a large batch. Not yet run on a GPU (none was
# lent to the sessions that wrote it): put its numbers in docs/speedrun.md when you run it.
#
# Knobs (environment): CLIP_FLAGS, VAE_FLAGS, UNET_FLAGS, ALIGN_TEXT_FLAGS replace a stage's flags below; CONCEPTS (50)
# concepts measured per language; RESULTS (the results file instead of
# benchmarks/results/speedrun/gpu-emoji-<BUDGET>min.json); PYTHON. GPU_CHECK_ALLOW_CPU=1 runs it on a CPU (only to
# check this script itself: tests/e2e/test_recipe_scripts.py does, with a 2-minute budget, tiny presets and
# CONCEPTS=2).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mkdir -p "${1:-$REPO/runs/gpu-emoji}" && cd "${1:-$REPO/runs/gpu-emoji}" && pwd)"
BUDGET_MIN="${2:-10}"
PYTHON="${PYTHON:-python}"

# The CPU recipe of docs/speedrun.md (v-prediction with zero terminal SNR, the pooled prompt in the time
# embedding; an 8-channel VAE trained on 32 px crops with a CIELAB colour term), sized for a GPU: batches
# of 256 and a U-Net three times wider with two layers per level (55 M parameters against 4.6 M): not wider,
# because passes over each image, not capacity, limited every CPU run. bf16 comes from --mixed-precision auto.
CLIP_FLAGS="${CLIP_FLAGS:---preset small --batch-size 256 --num-workers 4}"
VAE_FLAGS="${VAE_FLAGS:---preset small --latent-channels 8 --crop-size 32 --colour-weight 1 --colour-space lab --batch-size 64 --num-workers 4}"
UNET_FLAGS="${UNET_FLAGS:---preset small --block-out-channels 96,192,384 --layers-per-block 2 --prediction-type v_prediction --zero-terminal-snr --text-time-embedding --batch-size 256 --lr 4e-4 --warmup-steps 200 --num-workers 4}"

# The text encoder aligned across caption languages after CLIP (`latentdiff align-text`): on 200 emoji
# at equal steps it lifted the U-Net's top-5 from 0.47 to 0.81 in six languages (docs/speedrun/text-encoder.md, "One emoji, one
# condition"). 40 epochs, not 10: the 10-epoch alignment stopped with its loss still falling, and at 40 a training
# caption in another language finds its own emoji's English condition first 0.88-0.90 of the time instead of
# 0.66-0.74 (docs/speedrun/conditions.md, "The alignment trained longer"); seconds on a GPU. ALIGN_TEXT=0 leaves it out.
ALIGN_TEXT_FLAGS="${ALIGN_TEXT_FLAGS:---epochs 40}"
ALIGN_ARGS=()
if [ "${ALIGN_TEXT:-1}" != 0 ]; then ALIGN_ARGS=(--align-text "$ALIGN_TEXT_FLAGS"); fi

"$PYTHON" "$REPO/scripts/require_cuda.py" gpu_emoji.sh "on a CPU, runs/default.sh is the recipe"

if [ ! -f "$WORK/data/manifest.json" ]; then
  "$PYTHON" -m latentdiff prepare-data emoji --languages all --image-size 64 --out "$WORK/data"
fi

# The U-Net's caches take seconds on a GPU, hence the small overhead margin.
cd "$REPO/benchmarks"
"$PYTHON" speedrun.py --name "gpu-emoji-${BUDGET_MIN}min" --data "$WORK/data" --work "$WORK/speedrun" \
  --budget-min "$BUDGET_MIN" --clip-share 0.1 --vae-share 0.3 --unet-overhead-min 1 \
  --num-concepts "${CONCEPTS:-50}" --clip "$CLIP_FLAGS" --vae "$VAE_FLAGS" --unet "$UNET_FLAGS" "${ALIGN_ARGS[@]}" \
  ${RESULTS:+--out "$RESULTS"}
echo "gpu_emoji.sh: the pipeline is $WORK/speedrun/pipeline (latentdiff generate --model it); numbers above"
