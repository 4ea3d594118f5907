#!/usr/bin/env bash
# `make demo`: generate from the bundled default model (src/latentdiff/default_model/, the emoji model
# runs/default.sh trains), no network and no GPU needed: one English prompt and the same concept in
# French, Spanish, German, Chinese and Japanese. Outputs go to demo/images/.
set -euo pipefail
cd "$(dirname "$0")/.."
LD=.venv/bin/latentdiff
OUT=${DEMO_DIR:-demo}

$LD generate "red apple" --num-images 4 --seed 1 --out "$OUT/images"
$LD generate "pomme rouge" "manzana roja" "roter apfel" "红苹果" "赤リンゴ" --seed 1 --out "$OUT/images"
echo "demo done: images in $OUT/images (train your own model: make demo-train)"
