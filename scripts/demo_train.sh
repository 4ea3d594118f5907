#!/usr/bin/env bash
# `make demo-train`: the whole chain on the built-in shapes dataset with the tiny presets, in a few minutes on a
# 2-core CPU: prepare the data, train CLIP + VAE + U-Net, generate from text, evaluate.
# Outputs go to demo/ (rerunning resumes or skips what is done).
set -euo pipefail
cd "$(dirname "$0")/.."
LD=.venv/bin/latentdiff
OUT=${DEMO_DIR:-demo}

[ -f "$OUT/shapes/manifest.json" ] || $LD prepare-data shapes --out "$OUT/shapes" --num-images 600
$LD train --data "$OUT/shapes" --out "$OUT/run" --preset tiny --clip-max-steps 200 --vae-max-steps 200 --unet-max-steps 400
$LD generate "a red circle" "two blue squares" --model "$OUT/run/pipeline" --num-images 2 --seed 7 --steps 20 --out "$OUT/images"
$LD evaluate --model "$OUT/run/pipeline" --data "$OUT/shapes" --num-samples 40 --steps 20 --out "$OUT/evaluation"
echo "demo done: images in $OUT/images, metrics in $OUT/evaluation/report.md"
