"""MobileNetV3-small backbones truncated at stride 16, as NanoTrack uses them.

Parameter names follow the common ``features.N.conv.M`` layout of MobileNetV3 ports so that
official NanoTrack checkpoints load without renaming. An inverted-residual block is
``[pw expand, BN, act, dw, BN, SE|Identity, act, pw linear, BN]`` (without the expansion when
the hidden width equals the input width: ``[dw, BN, act, SE|Identity, pw linear, BN]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from siam_tracking_ros.models.backbones.common import ResidualBlock


class BlockSpec(NamedTuple):
    """One inverted-residual block: kernel, hidden width, output width, SE, hard-swish, stride."""

    kernel: int
    hidden: int
    out: int
    squeeze_excite: bool
    hard_swish: bool
    stride: int


#: MobileNetV3-small up to stride 16 (the first 8 blocks); output 48 channels (NanoTrack v1/v2)
SMALL_STRIDE16: tuple[BlockSpec, ...] = (
    BlockSpec(3, 16, 16, True, False, 2),
    BlockSpec(3, 72, 24, False, False, 2),
    BlockSpec(3, 88, 24, False, False, 1),
    BlockSpec(5, 96, 40, True, True, 2),
    BlockSpec(5, 240, 40, True, True, 1),
    BlockSpec(5, 240, 40, True, True, 1),
    BlockSpec(5, 120, 48, True, True, 1),
    BlockSpec(5, 144, 48, True, True, 1),
)

#: NanoTrack v3: one more block kept at stride 1 (instead of 2) for 96 output channels
SMALL_STRIDE16_WIDE: tuple[BlockSpec, ...] = (*SMALL_STRIDE16, BlockSpec(5, 288, 96, True, True, 1))

#: the block lists by name (the ``blocks`` of the ``mobilenetv3`` backbone part)
BLOCK_LISTS: dict[str, tuple[BlockSpec, ...]] = {"small_stride16": SMALL_STRIDE16,
                                                 "small_stride16_wide": SMALL_STRIDE16_WIDE}

STEM_CHANNELS = 16


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to a multiple of ``divisor`` without losing more than 10 %."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class SqueezeExcite(nn.Module):
    """Channel gating: global pool -> FC -> ReLU -> FC -> hard sigmoid."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = make_divisible(channels // reduction)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True),
                                nn.Linear(hidden, channels), nn.Hardsigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels = x.shape[:2]
        gate = self.fc(self.avg_pool(x).view(batch, channels)).view(batch, channels, 1, 1)
        return x * gate


def _activation(hard_swish: bool) -> nn.Module:
    return nn.Hardswish() if hard_swish else nn.ReLU(inplace=True)


class InvertedResidual(ResidualBlock):
    """MobileNetV3 block with an identity shortcut where shapes allow it."""

    def __init__(self, in_channels: int, spec: BlockSpec) -> None:
        super().__init__()
        self.use_residual = spec.stride == 1 and in_channels == spec.out
        hidden, kernel = spec.hidden, spec.kernel
        depthwise = nn.Conv2d(hidden, hidden, kernel, spec.stride, (kernel - 1) // 2, groups=hidden,
                              bias=False)
        gate = SqueezeExcite(hidden) if spec.squeeze_excite else nn.Identity()
        project = [nn.Conv2d(hidden, spec.out, 1, bias=False), nn.BatchNorm2d(spec.out)]
        if in_channels == hidden:
            layers = [depthwise, nn.BatchNorm2d(hidden), _activation(spec.hard_swish), gate, *project]
        else:
            layers = [nn.Conv2d(in_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden),
                      _activation(spec.hard_swish), depthwise, nn.BatchNorm2d(hidden), gate,
                      _activation(spec.hard_swish), *project]
        self.conv = nn.Sequential(*layers)


class MobileNetV3(nn.Module):
    """Stem (3x3 stride-2 conv, BN, hard-swish) followed by inverted-residual blocks.

    Takes a float image batch ``(B, 3, H, W)`` (no normalisation: NanoTrack feeds 0..255 pixels)
    and returns the last block's features at stride ``16`` for the stock block lists.
    """

    def __init__(self, blocks: Sequence[BlockSpec] = SMALL_STRIDE16) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(
            nn.Conv2d(3, STEM_CHANNELS, 3, 2, 1, bias=False), nn.BatchNorm2d(STEM_CHANNELS),
            nn.Hardswish())]
        channels = STEM_CHANNELS
        for spec in blocks:
            layers.append(InvertedResidual(channels, spec))
            channels = spec.out
        self.features = nn.Sequential(*layers)
        self.out_channels = channels
        #: output stride: the stem's 2 times each stride-2 block's
        self.stride = 2 ** (1 + sum(1 for spec in blocks if spec.stride == 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)
