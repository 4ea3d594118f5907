#!/usr/bin/env bash
# `make demo`: generate from the bundled models, no network and no GPU needed: the default emoji model
# (src/latentdiff/default_model/, runs/default.sh) with one English prompt and the same concept in French,
# Spanish, German, Chinese and Japanese, then the shapes model (`--model shapes`, runs/shapes.sh) with
# compositional prompts. Outputs go to demo/images/.
set -euo pipefail
cd "$(dirname "$0")/.."
LD=.venv/bin/latentdiff
OUT=${DEMO_DIR:-demo}

$LD generate "red apple" --num-images 4 --seed 1 --out "$OUT/images"
$LD generate "pomme rouge" "manzana roja" "roter apfel" "红苹果" "赤リンゴ" --seed 1 --out "$OUT/images"
$LD generate "a red circle to the left of a blue square" "two yellow stars" "a small green triangle at the top" \
  --model shapes --seed 1 --out "$OUT/images"
echo "demo done: images in $OUT/images (train your own model: make demo-train)"
