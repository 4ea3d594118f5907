#!/usr/bin/env bash
# The recipe of latentdiff's bundled default model (src/latentdiff/default_model/), from nothing:
#   1. the built-in emoji dataset at 64x64 with captions in all 14 languages of the `emoji` package
#   2. CLIP (text + vision towers, small preset): 3,000 steps of batch 32
#   3. the VAE with 8 latent channels: 45 min on 32 px crops with the colour term, 25 min more from it
#      (lr 5e-4), then its decoder alone on whole images for 12 min (a decoder that only saw crops tints whole
#      images; the encoder, and so the latent space, stays the same). docs/speedrun/vae.md, "The emoji VAE".
#   4. the U-Net for 180 min at lr 1e-3: v-prediction, zero terminal SNR, the pooled prompt in the time
#      embedding (docs/speedrun/emoji-unet-passes.md: lr 1e-3 memorised 2.5x better than 3e-4 at equal time)
#   5. the U-Net again from that export, UNET_MORE_STEPS more at lr 1e-3 (a warm restart of the cosine schedule),
#      and the VAE's decoder again, VAE_FINISH_STEPS more on whole images with the colour term in CIELAB
#      (the encoder and latent space stay fixed, so the U-Net still fits). docs/speedrun/emoji-unet-passes.md, "More passes".
#   6. the U-Net once more from that, UNET_MORE2_STEPS at lr 1e-3 with an EMA of its weights (decay 0.999; the
#      export is the average). docs/speedrun/emoji-unet-passes.md, "More passes, again".
#   7. the VAE's decoder once more from its last finish, VAE_FINISH2_STEPS at lr 1e-4 with the colour term on every
#      pixel (--colour-cell-size 1) instead of 4x4 cells: docs/speedrun/vae.md, "The colour term on every pixel".
#   8. the U-Net once more from step 6's export, UNET_MORE3_STEPS at lr 1e-3 with the EMA: "More passes, a third time";
#      then again from that, UNET_MORE4_STEPS: "More passes, a fourth time".
#   9. the CLIP's text tower aligned across languages (`latentdiff align-text`, 10 epochs, then 12 more
#      from that folder): one emoji's captions in all 14 languages give nearly one hidden-state sequence, so the
#      U-Net no longer spends passes learning 14 conditions per image. The vision tower stays as it was.
#  10. the U-Net once more from step 8's export, UNET_ALIGNED_STEPS at lr 1e-3 with the EMA, on the aligned text
#      encoder, then from that UNET_ALIGNED2_STEPS, UNET_ALIGNED3_STEPS, UNET_ALIGNED4_STEPS and UNET_ALIGNED5_STEPS
#      more (warm restarts of the cosine schedule), then UNET_ALIGNED6_STEPS and UNET_ALIGNED7_STEPS at a lower
#      peak lr, 3e-4, UNET_ALIGNED8_STEPS at 1e-4 and last UNET_ALIGNED9_STEPS at 3e-4 again.
#      docs/speedrun/aligned-unet.md, "The bundled U-Net on the aligned text encoder" and the sections after it.
#  11. scripts/bundle_model.py: the pipeline (+ the aligned CLIP folder, for CLIP retrieval) into the package folder
#      as fp16 safetensors.
#
#   bash runs/default.sh [WORK_DIR]        (default WORK_DIR: runs/default/, git-ignored; rerun to resume)
#
# Every step resumes: prepare-data is skipped when WORK_DIR/data exists, and every training command continues
# an interrupted run from its last checkpoint (or skips a finished one) when rerun.
#
# The VAE and U-Net stages stop on time (--max-minutes: the LR schedule is fitted to the measured speed), as the
# bundled model was trained; on another machine they take the same time and do a different number of steps.
# Here they ended at VAE steps 2,637 + 1,673 + 279 and U-Net step 11,083; the stages after them run by steps.
#
# Threads: OMP_NUM_THREADS=1 here (each stage ran with one torch thread beside another job on the 2-core
# development VM; two threads per process thrash when another process holds a core, docs/presets.md).
#
# Wall time on the 2-core AMD EPYC development VM (CPU only, fp32): CLIP 12.4 min (2 threads, 2026-11-27),
# VAE 82 min, U-Net 180 min (plus its latent/text cache), 2026-12-01/02; then on its Intel Xeon successor the
# U-Net 95 min more and the decoder 70 min more, side by side, 2026-12-02; then the U-Net 115 min more (beside
# ablation runs), the afternoon of 2026-12-02; then the decoder 55 min more and the U-Net 125 min more, side by side,
# that evening; then the U-Net 112 min more on an AMD EPYC with AVX-512 BF16, 2026-12-03; then, on the same kind of
# machine, the text alignment 16 + 11 min (2 threads) and the U-Net 81 min more with bf16 autocast, then 40, 112,
# 103, about 95, 50, about 88, about 72 and 60 min more, 2026-12-04.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-$REPO/runs/default}"
PYTHON="${PYTHON:-python}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# The aligned continuations ran with bf16 autocast (1.23x fp32 on the AMD EPYC with AVX-512 BF16); on the Intel Xeon VM
# of 2026-12-06 bf16 ran at 0.57x fp32 (benchmarks/bench_train_unet.py --threads 2 --bf16): MIXED_PRECISION=no there.
MIXED_PRECISION="${MIXED_PRECISION:-bf16}"
LD=("$PYTHON" -m latentdiff)

CLIP_STEPS=3000  # batch 32: 96,000 image-caption pairs, ~28 epochs of the 3,382 training images
UNET_MORE_STEPS=17022  # batch 32: about 161 more passes over each training image (95 min on the Xeon)
VAE_FINISH_STEPS=4646  # batch 16 whole images (70 min on the Xeon)
UNET_MORE2_STEPS=18722  # batch 32: about 177 more passes over each training image (115 min on the Xeon)
VAE_FINISH2_STEPS=2762  # batch 16 whole images (55 min on the Xeon, beside the U-Net)
UNET_MORE3_STEPS=16844  # batch 32: about 159 more passes over each training image (125 min on the Xeon)
UNET_MORE4_STEPS=13509  # batch 32: about 128 more passes over each training image (112 min on an AMD EPYC, Zen 4)
UNET_ALIGNED_STEPS=12000  # batch 32: about 114 more passes over each training image (81 min on an AMD EPYC, Zen 4, bf16)
UNET_ALIGNED2_STEPS=6000  # batch 32: about 57 more passes (40 min there)
UNET_ALIGNED3_STEPS=15027  # batch 32: about 142 more passes (112 min there, beside an lr 2e-3 ablation)
UNET_ALIGNED4_STEPS=15000  # batch 32: about 142 more passes (103 min there, 2 torch threads)
UNET_ALIGNED5_STEPS=15000  # batch 32: about 142 more passes (about 95 min there, interrupted and resumed)
UNET_ALIGNED6_STEPS=10000  # batch 32: about 95 more passes at peak lr 3e-4 (50 min there, 2 torch threads)
UNET_ALIGNED7_STEPS=15000  # batch 32: about 142 more passes at peak lr 3e-4 (about 88 min there, 1 then 2 threads)
UNET_ALIGNED8_STEPS=10000  # batch 32: about 95 more passes at peak lr 1e-4 (about 72 min there, partly beside the tests)
UNET_ALIGNED9_STEPS=12000  # batch 32: about 114 more passes at peak lr 3e-4 (60 min there, 2 torch threads)

start=$(date +%s)
echo "default model recipe: work dir $WORK, $OMP_NUM_THREADS torch thread(s), started $(date -u '+%Y-%m-%d %H:%M UTC')"

if [ ! -f "$WORK/data/manifest.json" ]; then
  "${LD[@]}" prepare-data emoji --languages all --image-size 64 --out "$WORK/data"
fi

"${LD[@]}" train-clip --preset small --seed 0 --data "$WORK/data" --out "$WORK/run/clip" --max-steps "$CLIP_STEPS"

"${LD[@]}" train-vae --preset small --latent-channels 8 --crop-size 32 --colour-weight 1 --data "$WORK/data" \
  --out "$WORK/run/vae-crops" --max-steps 1000000 --max-minutes 45
"${LD[@]}" train-vae --init "$WORK/run/vae-crops" --crop-size 32 --colour-weight 1 --lr 5e-4 --warmup-steps 50 \
  --data "$WORK/data" --out "$WORK/run/vae-crops-more" --max-steps 1000000 --max-minutes 25 --validate-every 0
"${LD[@]}" train-vae --init "$WORK/run/vae-crops-more" --decoder-only --lr 3e-4 --warmup-steps 50 --batch-size 16 \
  --colour-weight 1 --data "$WORK/data" --out "$WORK/run/vae" --max-steps 1000000 --max-minutes 12 --validate-every 0

"${LD[@]}" train-unet --clip "$WORK/run/clip" --vae "$WORK/run/vae" --data "$WORK/data" --out "$WORK/run/pipeline" \
  --preset small --prediction-type v_prediction --zero-terminal-snr --text-time-embedding --lr 1e-3 \
  --warmup-steps 100 --batch-size 32 --max-steps 1000000 --max-minutes 180 --validate-every 1000 --checkpoint-every 250

# Step counts, not minutes, from here: these ran on a faster CPU (an Intel Xeon, 2.9-3.3 U-Net steps/s) than the
# stages above (an AMD EPYC, about 1.1), and the step count fixes the cosine schedule.
"${LD[@]}" train-unet --init "$WORK/run/pipeline" --clip "$WORK/run/clip" --vae "$WORK/run/vae" --data "$WORK/data" \
  --out "$WORK/run/pipeline-more" --seed 2 --prediction-type v_prediction --zero-terminal-snr --text-time-embedding \
  --lr 1e-3 --warmup-steps 100 --batch-size 32 --max-steps "$UNET_MORE_STEPS" --validate-every 2000 --checkpoint-every 250
"${LD[@]}" train-vae --init "$WORK/run/vae" --decoder-only --lr 3e-4 --warmup-steps 50 --batch-size 16 \
  --colour-weight 1 --colour-space lab --data "$WORK/data" --out "$WORK/run/vae-finish" --seed 3 \
  --max-steps "$VAE_FINISH_STEPS" --validate-every 800

"${LD[@]}" train-unet --init "$WORK/run/pipeline-more" --clip "$WORK/run/clip" --vae "$WORK/run/vae-finish" \
  --data "$WORK/data" --out "$WORK/run/pipeline-more2" --seed 4 --prediction-type v_prediction --zero-terminal-snr \
  --text-time-embedding --lr 1e-3 --warmup-steps 100 --batch-size 32 --ema-decay 0.999 \
  --max-steps "$UNET_MORE2_STEPS" --validate-every 4000 --checkpoint-every 250

"${LD[@]}" train-vae --init "$WORK/run/vae-finish" --decoder-only --lr 1e-4 --warmup-steps 50 --batch-size 16 \
  --colour-weight 1 --colour-space lab --colour-cell-size 1 --data "$WORK/data" --out "$WORK/run/vae-finish2" --seed 6 \
  --max-steps "$VAE_FINISH2_STEPS" --validate-every 1000

"${LD[@]}" train-unet --init "$WORK/run/pipeline-more2" --clip "$WORK/run/clip" --vae "$WORK/run/vae-finish" \
  --data "$WORK/data" --out "$WORK/run/pipeline-more3" --seed 5 --prediction-type v_prediction --zero-terminal-snr \
  --text-time-embedding --lr 1e-3 --warmup-steps 100 --batch-size 32 --ema-decay 0.999 \
  --max-steps "$UNET_MORE3_STEPS" --validate-every 4000 --checkpoint-every 250

# The bundled model's run started from the fp16 bundle of pipeline-more3 (its fp32 export was lost with a VM); here
# from the fp32 export itself.
"${LD[@]}" train-unet --init "$WORK/run/pipeline-more3" --clip "$WORK/run/clip" --vae "$WORK/run/vae-finish2" \
  --data "$WORK/data" --out "$WORK/run/pipeline-more4" --seed 7 --prediction-type v_prediction --zero-terminal-snr \
  --text-time-embedding --lr 1e-3 --warmup-steps 100 --batch-size 32 --ema-decay 0.999 \
  --max-steps "$UNET_MORE4_STEPS" --validate-every 4000 --checkpoint-every 250

# The bundled model's alignment started from the fp16 bundle of run/clip (bundled since 2026-11-27); here from
# run/clip itself. It was made by benchmarks/align_text_languages.py before that script became the align-text stage:
# the same targets, loss and schedule, the captions drawn in another order. Each folder's alignment_metrics.json
# has the agreement between languages and the CLIP retrieval before and after.
# A finished alignment is skipped on a rerun, as a finished training stage is.
"${LD[@]}" align-text --clip "$WORK/run/clip" --data "$WORK/data" --out "$WORK/run/clip-aligned" --epochs 10
"${LD[@]}" align-text --clip "$WORK/run/clip-aligned" --data "$WORK/data" --out "$WORK/run/clip-aligned-more" --epochs 12

# The U-Net continuations on the aligned text encoder: one recipe, each from the last one's export.
aligned_unet() {  # FROM OUT SEED PEAK_LR STEPS VALIDATE_EVERY (FROM and OUT: folders of $WORK/run)
  "${LD[@]}" train-unet --init "$WORK/run/$1" --out "$WORK/run/$2" --seed "$3" --lr "$4" --max-steps "$5" \
    --validate-every "$6" --clip "$WORK/run/clip-aligned-more" --vae "$WORK/run/vae-finish2" --data "$WORK/data" \
    --prediction-type v_prediction --zero-terminal-snr --text-time-embedding --warmup-steps 100 --batch-size 32 \
    --ema-decay 0.999 --mixed-precision "$MIXED_PRECISION" --checkpoint-every 250
}
# The bundled model's run started from the fp16 bundle of pipeline-more4, with its VAE (vae-finish2).
aligned_unet pipeline-more4 pipeline-aligned 8 1e-3 "$UNET_ALIGNED_STEPS" 4000
aligned_unet pipeline-aligned pipeline-aligned2 9 1e-3 "$UNET_ALIGNED2_STEPS" 3000
# The bundled model's run had --max-minutes 112 --max-steps 30000, which fixed its count at 15,027 from its speed,
# and --clip the fp16 bundle of clip-aligned-more (the package's clip/ folder); here that folder itself.
aligned_unet pipeline-aligned2 pipeline-aligned3 10 1e-3 "$UNET_ALIGNED3_STEPS" 100000
aligned_unet pipeline-aligned3 pipeline-aligned4 11 1e-3 "$UNET_ALIGNED4_STEPS" 100000
aligned_unet pipeline-aligned4 pipeline-aligned5 12 1e-3 "$UNET_ALIGNED5_STEPS" 100000
# A lower peak lr beat another warm restart at 1e-3 (docs/speedrun/aligned-unet.md, "A lower peak lr, 3e-4, after the
# warm restarts").
aligned_unet pipeline-aligned5 pipeline-aligned6 13 3e-4 "$UNET_ALIGNED6_STEPS" 100000
aligned_unet pipeline-aligned6 pipeline-aligned7 14 3e-4 "$UNET_ALIGNED7_STEPS" 100000
# Then a peak of 1e-4 (level alone) and 3e-4 again (docs/speedrun/aligned-unet.md, "114 more passes at 3e-4").
aligned_unet pipeline-aligned7 pipeline-aligned8 15 1e-4 "$UNET_ALIGNED8_STEPS" 100000
aligned_unet pipeline-aligned8 pipeline-aligned9 16 3e-4 "$UNET_ALIGNED9_STEPS" 100000

# --guidance 2: the best of `latentdiff evaluate --guidance-sweep 1.5,2,3` on the test split (README,
# docs/speedrun/aligned-unet.md)
"$PYTHON" "$REPO/scripts/bundle_model.py" --run "$WORK/run" --pipeline "$WORK/run/pipeline-aligned9" \
  --vae "$WORK/run/vae-finish2" --clip "$WORK/run/clip-aligned-more" --guidance 2 \
  --out "$REPO/src/latentdiff/default_model"

echo "default model recipe: done in $(( ($(date +%s) - start) / 60 )) min"
