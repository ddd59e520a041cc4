"""Cross-correlation operators shared by every Siamese head.

All take search features ``x`` of shape ``(B, C, H, W)`` and template features ``z`` of shape
``(B, C', h, w)`` and use grouped convolution so the batch runs in one call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _dims(t: torch.Tensor) -> tuple[int, ...]:
    """Shape as plain ints (static shapes in ONNX exports; traced sizes would be dynamic)."""
    return tuple(int(v) for v in t.shape)


def xcorr_plain(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """SiamFC correlation: one response channel per pair, summed over channels.

    ``x (B, C, H, W)``, ``z (B, C, h, w)`` -> ``(B, 1, H-h+1, W-w+1)``.
    """
    batch, channels, height, width = _dims(x)
    out = F.conv2d(x.reshape(1, batch * channels, height, width), z, groups=batch)
    return out.reshape(batch, 1, *_dims(out)[2:])


def xcorr_up_channel(x: torch.Tensor, z: torch.Tensor, out_channels: int) -> torch.Tensor:
    """SiamRPN up-channel correlation: the template is a bank of ``out_channels`` kernels.

    ``x (B, C, H, W)``, ``z (B, out_channels * C, h, w)`` -> ``(B, out_channels, H-h+1, W-w+1)``.
    """
    batch, channels, height, width = _dims(x)
    kernels = z.reshape(batch * out_channels, channels, *_dims(z)[2:])
    out = F.conv2d(x.reshape(1, batch * channels, height, width), kernels, groups=batch)
    return out.reshape(batch, out_channels, *_dims(out)[2:])


def xcorr_depthwise(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """SiamRPN++ depthwise correlation: channel ``c`` of ``x`` with channel ``c`` of ``z``.

    ``x (B, C, H, W)``, ``z (B, C, h, w)`` -> ``(B, C, H-h+1, W-w+1)``.
    """
    batch, channels, height, width = _dims(x)
    kernels = z.reshape(batch * channels, 1, *_dims(z)[2:])
    out = F.conv2d(x.reshape(1, batch * channels, height, width), kernels, groups=batch * channels)
    return out.reshape(batch, channels, *_dims(out)[2:])


def xcorr_pointwise(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Pixel-wise correlation: every template position is a 1x1 kernel over all channels.

    ``x (B, C, H, W)``, ``z (B, C, h, w)`` -> ``(B, h*w, H, W)`` (as in NanoTrack v3 / Alpha-Refine).
    """
    kernels = z.flatten(2).transpose(1, 2)  # (B, h*w, C)
    return torch.einsum("bkc,bchw->bkhw", kernels, x)
