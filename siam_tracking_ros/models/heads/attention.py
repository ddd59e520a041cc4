"""Exemplar attention modules: RASNet (Wang et al., CVPR 2018) and SA-Siam (He et al., CVPR 2018).

RASNet weights the cross-correlation with attention computed from the exemplar::

    f(z, x)[u, v] = sum_c β_c sum_ij γ_ij z_cij x_c(i + u, j + v)

where ``γ = ρ̄ + ρ̃`` is the dual spatial attention (a learned general map ρ̄ plus a residual map
ρ̃ predicted from the exemplar by a small encoder-decoder) and ``β`` is channel attention
(global average pooling + two-layer MLP + sigmoid).

SA-Siam's semantic branch weights every template channel by ``ξ_c``: the channel's feature map is
max-pooled over a 3x3 grid around the target (the central cell is the target's template window),
a two-layer MLP shared across the channels of one layer maps the 9 values to one number, and a
sigmoid with a learned bias gives ``ξ_c = σ(mlp(p_c)) + b``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from siam_tracking_ros.models.heads.xcorr import xcorr_plain


def weighted_xcorr(x: torch.Tensor, z: torch.Tensor, spatial: torch.Tensor,
                   channel: torch.Tensor) -> torch.Tensor:
    """RASNet weighted cross-correlation.

    ``x (B, C, H, W)``, ``z (B, C, h, w)``, ``spatial γ (B, 1, h, w)``, ``channel β (B, C)`` ->
    ``(B, 1, H-h+1, W-w+1)``. Folding the weights into the kernel is exact because the response
    is linear in ``z``.
    """
    kernel = z * spatial * channel[:, :, None, None]
    return xcorr_plain(x, kernel)


class RASNetAttention(nn.Module):
    """General + residual spatial attention and channel attention from exemplar features.

    Args:
        channels: feature channels ``C``.
        template_size: side ``h = w`` of the exemplar feature map.
        hidden: width of the residual encoder-decoder.
        reduction: channel-attention MLP bottleneck ratio.
    """

    def __init__(self, channels: int, template_size: int, hidden: int = 64, reduction: int = 4) -> None:
        super().__init__()
        self.general = nn.Parameter(torch.ones(1, 1, template_size, template_size))
        self.encode = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(inplace=True),
        )
        self.decode = nn.Conv2d(hidden, 1, 1)
        # start from the general map alone; the residual part is learned
        nn.init.zeros_(self.decode.weight)
        nn.init.zeros_(self.decode.bias)
        self.channel_mlp = nn.Sequential(
            nn.Linear(channels, max(channels // reduction, 1)), nn.ReLU(inplace=True),
            nn.Linear(max(channels // reduction, 1), channels),
        )

    def residual(self, z: torch.Tensor) -> torch.Tensor:
        """Residual spatial attention ``ρ̃ (B, 1, h, w)``."""
        coarse = self.encode(z)
        up = F.interpolate(coarse, size=z.shape[-2:], mode="bilinear", align_corners=False)
        return self.decode(up)

    def maps(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exemplar features ``(B, C, h, w)`` -> ``(γ (B, 1, h, w), β (B, C))``."""
        spatial = self.general + self.residual(z)
        channel = torch.sigmoid(self.channel_mlp(z.mean(dim=(2, 3))))
        return spatial, channel

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.maps(z)


class AttentionWeightedTemplate(RASNetAttention):
    """RASNet's template transform: exemplar features weighted by their attention, ``β_c γ_ij z_cij``."""

    def __init__(self, in_channels: int, template_size: int, hidden: int = 64, reduction: int = 4) -> None:
        super().__init__(in_channels, template_size, hidden, reduction)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        spatial, channel = self.maps(z)
        return z * spatial * channel[:, :, None, None]


def grid_edges(size: int, inner: int) -> list[int]:
    """Cell edges ``[0, a, a + inner, size]`` of a 3-cell split with ``inner`` cells in the middle."""
    if size < inner + 2:
        raise ValueError(f"grid pooling needs a map larger than the target window + 2 ({size} vs {inner})")
    start = (size - inner) // 2
    return [0, start, start + inner, size]


def grid_max_pool(features: torch.Tensor, inner: int) -> torch.Tensor:
    """Max over a 3x3 grid whose central cell is the central ``inner x inner`` window.

    ``(B, C, H, W)`` -> ``(B, C, 9)``, cells in row-major order (index 4 = the target window).
    """
    rows = grid_edges(features.shape[-2], inner)
    cols = grid_edges(features.shape[-1], inner)
    cells = [features[..., rows[i]:rows[i + 1], cols[j]:cols[j + 1]].amax(dim=(-2, -1))
             for i in range(3) for j in range(3)]
    return torch.stack(cells, dim=-1)


class ChannelAttention(nn.Module):
    """SA-Siam channel attention ``ξ (B, C)`` from a template feature map with context.

    Args:
        inner: side of the target's template window inside the map (the central grid cell).
        hidden: width of the shared two-layer MLP.
        bias: initial value of the learned bias added after the sigmoid.
    """

    def __init__(self, inner: int, hidden: int = 9, bias: float = 0.5) -> None:
        super().__init__()
        self.inner = inner
        self.mlp = nn.Sequential(nn.Linear(9, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))
        self.bias = nn.Parameter(torch.tensor(float(bias)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` with context -> channel weights ``(B, C)``."""
        pooled = grid_max_pool(features, self.inner)
        return torch.sigmoid(self.mlp(pooled).squeeze(-1)) + self.bias
