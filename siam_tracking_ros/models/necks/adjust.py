"""Adjust layers of SiamRPN++ / SiamMask: 1x1 conv + BN to a common width, template centre crop.

Parameter names follow pysot: a single level is ``downsample.downsample.{0,1}``; several levels
are ``downsample2``, ``downsample3``, ... (numbered from 2 like the backbone stages).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size x size`` window of ``x (B, C, H, W)``; unchanged if already that small."""
    height, width = x.shape[-2:]
    if height <= size and width <= size:
        return x
    top, left = (height - size) // 2, (width - size) // 2
    return x[:, :, top:top + size, left:left + size]


class AdjustLayer(nn.Module):
    """``Conv1x1 -> BN`` to ``out_channels``; ``crop=True`` keeps the central ``center_size`` window.

    pysot crops every map narrower than 20 cells (the template); here the caller says so, which
    gives the same result for the 127/255 crops and keeps the search pass free of shape tests.
    """

    def __init__(self, in_channels: int, out_channels: int, center_size: int = 7) -> None:
        super().__init__()
        self.center_size = center_size
        self.downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: torch.Tensor, crop: bool = False) -> torch.Tensor:
        x = self.downsample(x)
        return center_crop(x, self.center_size) if crop else x


class AdjustAllLayer(nn.Module):
    """One :class:`AdjustLayer` per backbone level (pysot ``AdjustAllLayer``).

    With one level it takes and returns a tensor (module ``downsample``), with several a list
    (modules ``downsample2``, ``downsample3``, ...).
    """

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int],
                 center_size: int = 7) -> None:
        super().__init__()
        if len(in_channels) != len(out_channels) or not in_channels:
            raise ValueError(f"in_channels {list(in_channels)} and out_channels {list(out_channels)} "
                             f"must be non-empty and of equal length")
        self.num = len(out_channels)
        if self.num == 1:
            self.downsample = AdjustLayer(in_channels[0], out_channels[0], center_size)
        else:
            for index, (cin, cout) in enumerate(zip(in_channels, out_channels, strict=True)):
                self.add_module(f"downsample{index + 2}", AdjustLayer(cin, cout, center_size))

    def level(self, index: int) -> AdjustLayer:
        """The adjust layer of level ``index`` (0-based)."""
        return self.downsample if self.num == 1 else getattr(self, f"downsample{index + 2}")

    def forward(self, features: torch.Tensor | Sequence[torch.Tensor], crop: bool = False
                ) -> torch.Tensor | list[torch.Tensor]:
        if self.num == 1:
            single = features if isinstance(features, torch.Tensor) else features[0]
            return self.downsample(single, crop)
        if len(features) != self.num:
            raise ValueError(f"expected {self.num} feature maps, got {len(features)}")
        return [self.level(i)(f, crop) for i, f in enumerate(features)]
