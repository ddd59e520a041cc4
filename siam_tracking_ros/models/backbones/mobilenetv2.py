"""MobileNetV2 with dilated late stages (output stride 8), as pysot's ``mobilenetv2``.

Stages ``layer0`` (stem conv) .. ``layer7``; stages 4-7 keep stride 8 and use dilations 2/2/4/4.
Every inverted residual has its expansion 1x1 conv, even with expansion ratio 1 (pysot's
layout: ``layerN.M.conv.{0..7}``). With ``width_mult=1.4`` and ``used_layers=(3, 5, 7)`` the
outputs have 44/134/448 channels and are 15x15 for a 127 template and 31x31 for a 255 search.
The module takes float BGR in 0..255 and does not normalise.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from siam_tracking_ros.models.backbones.common import ResidualBlock, checked_levels

#: (expansion t, channels c, repeats n, stride s, dilation d) of stages 1..7
_STAGES = (
    (1, 16, 1, 1, 1),
    (6, 24, 2, 2, 1),
    (6, 32, 3, 2, 1),
    (6, 64, 4, 1, 2),
    (6, 96, 3, 1, 2),
    (6, 160, 3, 1, 4),
    (6, 320, 1, 1, 4),
)


class InvertedResidual(ResidualBlock):
    """Expand (1x1) -> depthwise 3x3 (strided or dilated) -> project (1x1), residual if shapes match."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int,
                 dilation: int = 1) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        padding = dilation if dilation > 1 else 2 - stride
        self.use_residual = stride == 1 and in_channels == out_channels
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, padding, dilation=dilation, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )


class MobileNetV2(nn.Module):
    """pysot ``mobilenetv2(width_mult, used_layers)``: returns the maps of ``used_layers``."""

    #: output stride (the late stages are dilated)
    stride = 8

    def __init__(self, width_mult: float = 1.4, used_layers: Sequence[int] = (3, 5, 7)) -> None:
        super().__init__()
        self.used_layers = checked_levels(used_layers, 7)
        channels = int(32 * width_mult)
        self.layer0 = nn.Sequential(
            nn.Conv2d(3, channels, 3, 2, 0, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU6(inplace=True),
        )
        stage_channels = [channels]
        last_dilation = 1
        for index, (t, c, n, s, d) in enumerate(_STAGES, start=1):
            out_channels = int(c * width_mult)
            first_dilation = d if d == last_dilation else max(d // 2, 1)
            blocks = [InvertedResidual(channels, out_channels, s, t, first_dilation)]
            blocks += [InvertedResidual(out_channels, out_channels, 1, t, d) for _ in range(1, n)]
            self.add_module(f"layer{index}", nn.Sequential(*blocks))
            channels = out_channels
            stage_channels.append(channels)
            last_dilation = d
        self._stage_channels = tuple(stage_channels)

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels of each returned map, in ``used_layers`` order."""
        return tuple(self._stage_channels[i] for i in self.used_layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for index in range(max(self.used_layers) + 1):
            x = getattr(self, f"layer{index}")(x)
            maps.append(x)
        return [maps[i] for i in self.used_layers]
