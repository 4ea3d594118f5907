#!/usr/bin/env bash
# GPU smoke check (never run by CI; needs a CUDA GPU): each stage trains a few hundred bf16 steps on the
# built-in `shapes` data stored as webdataset shards, then the pipeline generates; prints samples/s and peak
# GPU memory per stage. A few minutes on one modern GPU. Put the numbers in the README when you run it.
#
#   bash scripts/gpu_check.sh [WORK_DIR] [STEPS]      (defaults: a temp folder, 300 steps per stage)
#
# Options worth trying: EXTRA="--gradient-checkpointing" or EXTRA="--compile"; PRESET=small|base (default small);
# BATCH=64 (per stage); MIXED_PRECISION=fp16 on GPUs without bf16.
set -euo pipefail

WORK="${1:-$(mktemp -d -t latentdiff-gpu-XXXX)}"
STEPS="${2:-300}"
PYTHON="${PYTHON:-python}"
PRESET="${PRESET:-small}"
BATCH="${BATCH:-64}"
MP="${MIXED_PRECISION:-bf16}"
EXTRA="${EXTRA:-}"

"$PYTHON" "$(dirname "${BASH_SOURCE[0]}")/require_cuda.py" gpu_check.sh

[ -f "$WORK/data/manifest.json" ] || "$PYTHON" -m latentdiff prepare-data shapes --num-images "${NUM_IMAGES:-20000}" --image-size 64 \
  --format webdataset --out "$WORK/data"

# One stage in-process, so its peak GPU memory can be read after it: prints a `RESULT` line.
measure() {
  local name="$1"; shift
  "$PYTHON" - "$name" "$STEPS" "$BATCH" "$@" <<'PY'
import json, sys, time
import torch
from latentdiff import cli
name, steps, batch, argv = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
cuda = torch.cuda.is_available()
if cuda:
    torch.cuda.reset_peak_memory_stats()
started = time.perf_counter()
code = cli.main(argv)
seconds = time.perf_counter() - started
images = steps * batch if name != "generate" else 8
print("RESULT", json.dumps({"stage": name, "exit": code, "seconds": round(seconds, 1),
                            "items_per_s_incl_startup": round(images / seconds, 1),
                            "peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None}))
sys.exit(code)
PY
}

COMMON=(--preset "$PRESET" --max-steps "$STEPS" --batch-size "$BATCH" --mixed-precision "$MP" --num-workers "${NUM_WORKERS:-4}"
        --checkpoint-every 0 --validate-every 0 $EXTRA)
measure clip train-clip --data "$WORK/data" --out "$WORK/clip" "${COMMON[@]}"
measure vae train-vae --data "$WORK/data" --out "$WORK/vae" "${COMMON[@]}"
measure unet train-unet --data "$WORK/data" --clip "$WORK/clip" --vae "$WORK/vae" --out "$WORK/pipeline" "${COMMON[@]}"
measure generate generate "a red circle above a blue square" --model "$WORK/pipeline" --num-images 8 --out "$WORK/images"
echo "gpu_check.sh: done; the tqdm bars above show steady-state samples/s, the RESULT lines include startup; outputs in $WORK"
