"""Correlation operators against a naive loop."""

import torch

from siam_tracking_ros.models.heads.xcorr import (
    xcorr_depthwise,
    xcorr_plain,
    xcorr_pointwise,
    xcorr_up_channel,
)


def naive_corr(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Valid cross-correlation of one (C, H, W) map with one (C, h, w) kernel -> (H-h+1, W-w+1)."""
    _, height, width = x.shape
    _, kh, kw = k.shape
    out = torch.zeros(height - kh + 1, width - kw + 1, dtype=x.dtype)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = (x[:, i:i + kh, j:j + kw] * k).sum()
    return out


def test_plain_matches_loop() -> None:
    g = torch.Generator().manual_seed(0)
    x, z = torch.randn(2, 3, 7, 8, generator=g, dtype=torch.float64), torch.randn(2, 3, 3, 2, generator=g,
                                                                                 dtype=torch.float64)
    out = xcorr_plain(x, z)
    assert out.shape == (2, 1, 5, 7)
    for b in range(2):
        torch.testing.assert_close(out[b, 0], naive_corr(x[b], z[b]))


def test_up_channel_matches_loop() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 6, 6, generator=g, dtype=torch.float64)
    z = torch.randn(2, 4 * 3, 2, 2, generator=g, dtype=torch.float64)
    out = xcorr_up_channel(x, z, 4)
    assert out.shape == (2, 4, 5, 5)
    for b in range(2):
        for o in range(4):
            torch.testing.assert_close(out[b, o], naive_corr(x[b], z[b, o * 3:(o + 1) * 3]))


def test_depthwise_matches_loop() -> None:
    g = torch.Generator().manual_seed(2)
    x, z = torch.randn(2, 4, 6, 7, generator=g, dtype=torch.float64), torch.randn(2, 4, 3, 3, generator=g,
                                                                                 dtype=torch.float64)
    out = xcorr_depthwise(x, z)
    assert out.shape == (2, 4, 4, 5)
    for b in range(2):
        for c in range(4):
            torch.testing.assert_close(out[b, c], naive_corr(x[b, c:c + 1], z[b, c:c + 1]))


def test_pointwise_matches_loop() -> None:
    g = torch.Generator().manual_seed(3)
    x, z = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64), torch.randn(2, 3, 2, 2, generator=g,
                                                                                 dtype=torch.float64)
    out = xcorr_pointwise(x, z)
    assert out.shape == (2, 4, 4, 5)
    for b in range(2):
        for k in range(4):
            kernel = z[b, :, k // 2, k % 2]
            torch.testing.assert_close(out[b, k], (x[b] * kernel[:, None, None]).sum(0))
