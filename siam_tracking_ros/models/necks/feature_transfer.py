"""C-RPN feature transfer block (FTB): fuse a high-level feature into a lower-level one.

Fan & Ling, "Siamese Cascaded Region Proposal Networks for Real-Time Visual Tracking" (CVPR 2019):
the high-level feature is up-sampled by a deconvolution to the lower level's channels and size,
added element-wise to the lower-level feature, and passed through a ReLU. Where the deconvolution
does not land exactly on the lower level's size, it is bilinearly interpolated to it, and the
fused result can be interpolated to a common size so that every cascade stage shares one
anchor grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def resize_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear interpolation of ``(B, C, H, W)`` to ``size``; identity when it already fits."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    size = (int(size[0]), int(size[1]))  # plain ints: static shapes in ONNX exports
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class FeatureTransferBlock(nn.Module):
    """``relu(deconv(high) + low)``, optionally resized to ``out_size``.

    Args:
        high_channels: channels of the high-level (deeper) feature.
        low_channels: channels of the lower-level feature (and of the output).
        kernel_size: deconvolution kernel; with stride 1 it grows the map by ``kernel_size - 1``
            (3 matches AlexNet's conv5 -> conv4 -> conv3 sizes, each 2 larger).
    """

    def __init__(self, high_channels: int, low_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose2d(high_channels, low_channels, kernel_size, stride=1)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, high: torch.Tensor, low: torch.Tensor,
                out_size: tuple[int, int] | None = None) -> torch.Tensor:
        up = resize_to(self.deconv(high), tuple(low.shape[-2:]))
        fused = self.relu(up + low)
        return fused if out_size is None else resize_to(fused, out_size)
