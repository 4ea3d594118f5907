#!/usr/bin/env bash
# The emoji U-Net trained from nothing on a text encoder that tells the emoji apart: the run started on
# 2026-12-05 as the next bundled model's recipe (docs/speedrun/conditions.md, "From nothing on the crowded emoji"
# and "The alignment trained longer"; its midway measurements in "The run from nothing, measured midway").
#   1. the built-in emoji dataset at 64x64 with captions in all 14 languages (as runs/default.sh)
#   2. the CLIP and VAE of the model bundled on 2026-12-04 (commit 0ecb06c), taken from git so that this recipe
#      keeps its start when the bundle changes
#   3. that CLIP trained contrastively 5,000 steps more (batch 64, peak lr 5e-4): it finds the emoji without
#      skin-tone siblings by their names 0.51 of the time instead of 0.05 (docs/speedrun/conditions.md, "The CLIP
#      did not tell those emoji apart either")
#   4. its text tower aligned across languages for 40 epochs (`latentdiff align-text`): a training caption in
#      another language finds its own emoji's English condition first 0.88-0.90 of the time
#   5. the U-Net from nothing on it with the bundled recipe (small preset, v-prediction, zero terminal SNR, the
#      pooled prompt in the time embedding, EMA 0.999), one cosine schedule over 190,000 steps of batch 32 (about
#      1,800 passes over each training image), bf16 autocast
#
#   bash runs/emoji_from_nothing.sh [WORK_DIR]    (default WORK_DIR: runs/emoji-from-nothing/, git-ignored; rerun
#                                                  to resume; WORK_DIR/unet is the pipeline when it ends)
#
# Look at the U-Net midway without stopping it: `latentdiff export-checkpoint WORK_DIR/unet --out SNAPSHOT`.
# UNET_STOP_AT_STEP=N stops it after step N of the same schedule (`--stop-at-step`) and writes that step's pipeline
# to WORK_DIR/unet-step-N: a model taken midway is rebuilt exactly; rerun without it to go on.
# Wall time on the 2-core AMD EPYC development VM (2 threads, bf16): CLIP 39 min, alignment 50 min, the U-Net
# about 12-13 hours at 3.5-4.5 steps/s. Steps are fixed, not minutes, so another machine trains the same model.
#
# Knobs (environment): DATA (a prepared emoji dataset folder instead of WORK_DIR/data); START_CLIP and START_VAE (a
# CLIP folder and a VAE or pipeline folder to start from instead of bundle 0ecb06c's); THREADS (torch threads, 2);
# MIXED_PRECISION (the U-Net's --mixed-precision, bf16: 1.23x fp32's speed on that AMD EPYC, but 0.57x on the Intel
# Xeon VM of 2026-12-06, where `no` (fp32) is the faster; `benchmarks/bench_train_unet.py --threads 2 --bf16` tells;
# a stopped U-Net resumes only with the precision it started with);
# CLIP_MORE_STEPS (5000), ALIGN_EPOCHS (40), UNET_STEPS (190000), UNET_VALIDATE_EVERY (20000): smaller values only
# check the script itself; PYTHON.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mkdir -p "${1:-$REPO/runs/emoji-from-nothing}" && cd "${1:-$REPO/runs/emoji-from-nothing}" && pwd)"
PYTHON="${PYTHON:-python}"
export OMP_NUM_THREADS="${THREADS:-2}"
LD=("$PYTHON" -m latentdiff)
START_COMMIT=0ecb06c  # the bundle whose CLIP and VAE this recipe starts from

STOP=()
if [ -n "${UNET_STOP_AT_STEP:-}" ]; then
  if [ "$UNET_STOP_AT_STEP" -ge "${UNET_STEPS:-190000}" ]; then
    echo "emoji_from_nothing.sh: UNET_STOP_AT_STEP=$UNET_STOP_AT_STEP is not before the schedule's end" \
      "(${UNET_STEPS:-190000} steps); leave it out to train to the end." >&2
    exit 2
  fi
  STOP=(--stop-at-step "$UNET_STOP_AT_STEP")
fi

DATA="${DATA:-$WORK/data}"
if [ ! -f "$DATA/manifest.json" ]; then
  "${LD[@]}" prepare-data emoji --languages all --image-size 64 --out "$DATA"
fi

if [ -z "${START_CLIP:-}" ] || [ -z "${START_VAE:-}" ]; then
  if [ ! -f "$WORK/start/model_index.json" ]; then
    if ! git -C "$REPO" cat-file -e "$START_COMMIT^{commit}" 2>/dev/null; then
      echo "emoji_from_nothing.sh: commit $START_COMMIT, whose CLIP and VAE this recipe starts from, is not in $REPO" \
        "(a shallow clone or a copy without git history); fetch it, or pass START_CLIP and START_VAE." >&2
      exit 2
    fi
    rm -rf "$WORK/start.tmp" && mkdir -p "$WORK/start.tmp"
    git -C "$REPO" archive "$START_COMMIT" src/latentdiff/default_model \
      | tar -x -C "$WORK/start.tmp" --strip-components=3
    mv "$WORK/start.tmp" "$WORK/start"
  fi
fi
START_CLIP="${START_CLIP:-$WORK/start/clip}"
START_VAE="${START_VAE:-$WORK/start}"

"${LD[@]}" train-clip --init "$START_CLIP" --data "$DATA" --out "$WORK/clip-more" --seed 1 \
  --batch-size 64 --lr 5e-4 --warmup-steps 200 --max-steps "${CLIP_MORE_STEPS:-5000}" --validate-every 2500 \
  --checkpoint-every 250

"${LD[@]}" align-text --clip "$WORK/clip-more" --data "$DATA" --out "$WORK/clip-aligned" \
  --epochs "${ALIGN_EPOCHS:-40}"

"${LD[@]}" train-unet --data "$DATA" --out "$WORK/unet" --clip "$WORK/clip-aligned" --vae "$START_VAE" \
  --preset small --prediction-type v_prediction --zero-terminal-snr --text-time-embedding --lr 1e-3 \
  --warmup-steps 500 --batch-size 32 --ema-decay 0.999 --seed 40 --max-steps "${UNET_STEPS:-190000}" \
  --mixed-precision "${MIXED_PRECISION:-bf16}" --checkpoint-every 250 --validate-every "${UNET_VALIDATE_EVERY:-20000}" ${STOP[@]+"${STOP[@]}"}
if [ -n "${UNET_STOP_AT_STEP:-}" ]; then
  SNAPSHOT="$WORK/unet-step-$UNET_STOP_AT_STEP"
  [ -f "$SNAPSHOT/model_index.json" ] || \
    "${LD[@]}" export-checkpoint "$WORK/unet" --step "$UNET_STOP_AT_STEP" --out "$SNAPSHOT"
  echo "emoji_from_nothing.sh: step $UNET_STOP_AT_STEP's pipeline is $SNAPSHOT (rerun without UNET_STOP_AT_STEP to go on)"
else
  echo "emoji_from_nothing.sh: the pipeline is $WORK/unet (latentdiff generate --model $WORK/unet PROMPT)"
fi
