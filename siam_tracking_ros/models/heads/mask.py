"""SiamMask mask branch: a depthwise-correlation mask head and the refinement module.

Parameter names follow pysot (``MaskCorr``: ``conv_kernel``, ``conv_search``, ``head``;
``Refine``: ``v0..v2``, ``h0..h2``, ``deconv``, ``post0..post2``), which are also the names inside
the original SiamMask's ``mask_model.mask.*`` and ``refine_model.*``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from siam_tracking_ros.models.heads.rpn import DepthwiseXCorr
from siam_tracking_ros.models.heads.xcorr import xcorr_depthwise

#: side of the coarse per-position mask of the mask head (63 x 63 = 3969 channels)
COARSE_MASK_SIZE = 63
#: side of the refined mask, in exemplar-crop pixels
REFINED_MASK_SIZE = 127


class MaskCorr(DepthwiseXCorr):
    """Depthwise correlation whose head predicts a ``63 x 63`` mask at every response position.

    Output ``(B, 3969, H, W)``; the correlation feature (``(B, hidden, H, W)``) feeds the refinement.
    """

    def __init__(self, in_channels: int = 256, hidden: int = 256,
                 out_channels: int = COARSE_MASK_SIZE ** 2) -> None:
        super().__init__(in_channels, hidden, out_channels)

    def correlate(self, kernel: torch.Tensor, x_f: torch.Tensor) -> torch.Tensor:
        """The correlation feature for search features ``x_f`` and the adapted template ``kernel``."""
        return xcorr_depthwise(self.conv_search(x_f), kernel)

    def search_with_feature(self, kernel: torch.Tensor, x_f: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(coarse_mask, correlation_feature)``."""
        feature = self.correlate(kernel, x_f)
        return self.head(feature), feature


def _conv_relu_pair(in_channels: int, mid_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, mid_channels, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(mid_channels, out_channels, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class Refine(nn.Module):
    """SiamMask refinement: upsample one position's correlation feature with backbone skips.

    Inputs are the search-branch backbone maps ``f0`` (stem, 64 ch, stride 2), ``f1`` (layer1,
    256 ch, stride 4), ``f2`` (layer2, 512 ch, stride 8), the mask correlation feature and a
    response position ``(row, col)``. Windows of 61/31/15 cells around that position are cut from
    the zero-padded skips (pad 16/8/4), so all shapes are static. Output: ``(B, 1, 127, 127)``
    mask logits in exemplar-crop pixels of the chosen position. Upsampling is nearest-neighbour
    (``F.upsample``'s default in the reference).
    """

    def __init__(self, corr_channels: int = 256) -> None:
        super().__init__()
        self.corr_channels = corr_channels
        self.v0 = _conv_relu_pair(64, 16, 4)
        self.v1 = _conv_relu_pair(256, 64, 16)
        self.v2 = _conv_relu_pair(512, 128, 32)
        self.h2 = _conv_relu_pair(32, 32, 32)
        self.h1 = _conv_relu_pair(16, 16, 16)
        self.h0 = _conv_relu_pair(4, 4, 4)
        self.deconv = nn.ConvTranspose2d(corr_channels, 32, 15, 15)
        self.post0 = nn.Conv2d(32, 16, 3, padding=1)
        self.post1 = nn.Conv2d(16, 4, 3, padding=1)
        self.post2 = nn.Conv2d(4, 1, 3, padding=1)

    @staticmethod
    def skip_windows(feats: Sequence[torch.Tensor], pos: tuple[int, int]
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The 61x61, 31x31 and 15x15 skip windows of ``f0, f1, f2`` for response cell ``pos``."""
        row, col = int(pos[0]), int(pos[1])
        windows = []
        for feat, pad, scale, size in zip(feats[:3], (16, 8, 4), (4, 2, 1), (61, 31, 15), strict=True):
            padded = F.pad(feat, [pad, pad, pad, pad])
            window = padded[:, :, scale * row:scale * row + size, scale * col:scale * col + size]
            if window.shape[-2:] != (size, size):
                raise ValueError(f"position {pos} lies outside the {tuple(feat.shape[-2:])} skip map")
            windows.append(window)
        return windows[0], windows[1], windows[2]

    def forward(self, feats: Sequence[torch.Tensor], corr_feature: torch.Tensor,
                pos: tuple[int, int]) -> torch.Tensor:
        p0, p1, p2 = self.skip_windows(feats, pos)
        p3 = corr_feature[:, :, int(pos[0]), int(pos[1])].reshape(-1, self.corr_channels, 1, 1)
        out = self.deconv(p3)
        out = self.post0(F.interpolate(self.h2(out) + self.v2(p2), size=(31, 31), mode="nearest"))
        out = self.post1(F.interpolate(self.h1(out) + self.v1(p1), size=(61, 61), mode="nearest"))
        size = (REFINED_MASK_SIZE, REFINED_MASK_SIZE)
        return self.post2(F.interpolate(self.h0(out) + self.v0(p0), size=size, mode="nearest"))
