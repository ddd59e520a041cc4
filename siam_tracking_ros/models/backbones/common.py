"""What several backbones share: the check of the levels they return, the residual block's pass.
Registers nothing."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def checked_levels(used_layers: Sequence[int], last: int) -> tuple[int, ...]:
    """``used_layers`` as a tuple of ints, each within ``0..last``; ``ValueError`` otherwise."""
    used = tuple(int(i) for i in used_layers)
    if not used or min(used) < 0 or max(used) > last:
        raise ValueError(f"used_layers must be within 0..{last}, got {list(used_layers)}")
    return used


class ResidualBlock(nn.Module):
    """``conv(x)``, plus ``x`` where the block keeps the shape (``use_residual``); subclasses set
    both (MobileNetV2 / V3 inverted residuals)."""

    conv: nn.Module
    use_residual: bool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out
