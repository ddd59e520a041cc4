"""SiamFC score head: plain cross-correlation followed by a learned scale and bias."""

from __future__ import annotations

import torch
from torch import nn

from siam_tracking_ros.models.heads.xcorr import xcorr_plain


class FCHead(nn.Module):
    """``score = adjust(xcorr(x_f, z_f))`` with ``adjust`` a 1x1 conv (scale and bias).

    siamfc-pytorch multiplies the correlation by a fixed ``out_scale`` (0.001) and has no head
    parameters; that is ``adjust.weight = out_scale``, ``adjust.bias = 0``, the initialisation here.
    """

    def __init__(self, out_scale: float = 0.001) -> None:
        super().__init__()
        self.adjust = nn.Conv2d(1, 1, kernel_size=1)
        with torch.no_grad():
            self.adjust.weight.fill_(out_scale)
            self.adjust.bias.zero_()

    def forward(self, z_f: torch.Tensor, x_f: torch.Tensor) -> torch.Tensor:
        """``z_f (1 or B, C, h, w)``, ``x_f (B, C, H, W)`` -> score ``(B, 1, H-h+1, W-w+1)``.

        A single template is shared by all search images (multi-scale search).
        """
        if z_f.shape[0] != x_f.shape[0]:
            z_f = z_f.expand(x_f.shape[0], -1, -1, -1)
        return self.adjust(xcorr_plain(x_f, z_f))

    def template(self, z_f: torch.Tensor) -> torch.Tensor:
        """The template features are the correlation kernel."""
        return z_f

    def search(self, kernel: torch.Tensor, x_f: torch.Tensor) -> torch.Tensor:
        """Score map of search features ``x_f`` against ``kernel`` (see :meth:`forward`)."""
        return self(kernel, x_f)
