"""Exit with one sentence unless torch sees a CUDA GPU; print the GPU otherwise. For the GPU scripts:

    python scripts/require_cuda.py SCRIPT_NAME [WHAT_TO_DO_INSTEAD]

GPU_CHECK_ALLOW_CPU=1 lets a CPU through, only to check a GPU script itself on a CPU machine.
"""

import os
import sys

import torch

script = sys.argv[1] if len(sys.argv) > 1 else "this script"
if not torch.cuda.is_available():
    if os.environ.get("GPU_CHECK_ALLOW_CPU") == "1":
        sys.exit(0)
    instead = f" ({sys.argv[2]})" if len(sys.argv) > 2 else ""
    sys.exit(f"{script}: no CUDA GPU is visible to torch; run it on a machine with one{instead}.")
print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, bf16 supported: {torch.cuda.is_bf16_supported()}")
