"""A plain convolutional backbone sized for CPU training from scratch.

ResNet-18 at 64² spends most of a CPU step in layers whose spatial size is already 2×2; a plain
stack of 3×3 convolutions with batch-norm and no skip connections learns the synthetic cohorts as
well from random weights at a fraction of the cost (measured in ``benchmarks/train_step.py``).

Layout (``cnn9``: 9 convolutions): a 5×5 stride-2 stem, then four stages of two 3×3 conv + BN +
ReLU layers with ``widths`` channels (the first conv of stages 2–4 has stride 2), global average
pooling. ``cnn9-small`` halves the widths.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

WIDTHS = {"cnn9": (32, 64, 128, 256), "cnn9small": (16, 32, 64, 128)}


def _conv_bn(in_chans: int, out_chans: int, kernel: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(in_chans, out_chans, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(out_chans), nn.ReLU(inplace=True)]


class PlainCNN(nn.Module):
    """stem → 4 × (conv3 + conv3) → global average pooling; ``num_features`` = last width."""

    def __init__(self, in_chans: int = 1, widths: Sequence[int] = WIDTHS["cnn9"]):
        super().__init__()
        layers = _conv_bn(in_chans, widths[0], 5, 2)
        previous = widths[0]
        for stage, width in enumerate(widths):
            layers += _conv_bn(previous, width, 3, 1 if stage == 0 else 2)
            layers += _conv_bn(width, width, 3, 1)
            previous = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = previous
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(images)), 1)
