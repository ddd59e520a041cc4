"""Region-proposal heads of the SiamRPN family (parameter names follow pysot).

All heads output ``cls (B, 2K, H, W)`` and ``loc (B, 4K, H, W)`` for ``K`` anchors per position.
Channel ``c`` of ``cls`` is ``class * K + anchor`` and channel ``c`` of ``loc`` is
``coord * K + anchor`` (the layout pysot and DaSiamRPN decode with ``permute(1, 2, 3, 0)``).

Every head splits into ``template(z_f)`` (run once per target) and ``search(kernels, x_f)``
(run every frame); ``forward(z_f, x_f)`` chains both, as training needs. ``output_scalers()``
names, per network output, the layers that scale it linearly (training from scratch calibrates
them so the first logits are of order one).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from siam_tracking_ros.models.heads.xcorr import xcorr_depthwise, xcorr_up_channel

RPNOutput = tuple[torch.Tensor, torch.Tensor]
#: ``(output key, index into a per-stage list or None, layers scaling that output linearly)``
OutputScaler = tuple[str, int | None, list[nn.Module]]


class UpChannelRPN(nn.Module):
    """SiamRPN / DaSiamRPN head: the template becomes a bank of ``2K`` and ``4K`` kernels.

    Parameters (pysot ``UPChannelRPN`` names): ``template_cls_conv``, ``template_loc_conv``,
    ``search_cls_conv``, ``search_loc_conv`` (3x3 convs) and ``loc_adjust`` (1x1 conv).

    Args:
        anchor_num: anchors per position ``K``.
        in_channels: channels of the backbone features.
        hidden: channels of each correlation kernel (DaSiamRPN's ``feature_out``).
    """

    def __init__(self, anchor_num: int = 5, in_channels: int = 256, hidden: int | None = None) -> None:
        super().__init__()
        hidden = in_channels if hidden is None else hidden
        self.anchor_num = anchor_num
        self.cls_out = 2 * anchor_num
        self.loc_out = 4 * anchor_num
        self.template_cls_conv = nn.Conv2d(in_channels, hidden * self.cls_out, kernel_size=3)
        self.template_loc_conv = nn.Conv2d(in_channels, hidden * self.loc_out, kernel_size=3)
        self.search_cls_conv = nn.Conv2d(in_channels, hidden, kernel_size=3)
        self.search_loc_conv = nn.Conv2d(in_channels, hidden, kernel_size=3)
        self.loc_adjust = nn.Conv2d(self.loc_out, self.loc_out, kernel_size=1)

    def template(self, z_f: torch.Tensor) -> RPNOutput:
        """Correlation kernels ``(cls_kernel, loc_kernel)`` from template features."""
        return self.template_cls_conv(z_f), self.template_loc_conv(z_f)

    def search(self, kernels: RPNOutput, x_f: torch.Tensor) -> RPNOutput:
        """``(cls, loc)`` maps for search features ``x_f``."""
        cls_kernel, loc_kernel = kernels
        cls = xcorr_up_channel(self.search_cls_conv(x_f), cls_kernel, self.cls_out)
        loc = xcorr_up_channel(self.search_loc_conv(x_f), loc_kernel, self.loc_out)
        return cls, self.loc_adjust(loc)

    def forward(self, z_f: torch.Tensor, x_f: torch.Tensor) -> RPNOutput:
        return self.search(self.template(z_f), x_f)

    def output_scalers(self) -> list[OutputScaler]:
        """Layers whose weight and bias scale the ``cls`` / ``loc`` outputs linearly."""
        return [("cls", None, [self.template_cls_conv]), ("loc", None, [self.loc_adjust])]


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class DepthwiseXCorr(nn.Module):
    """One branch of SiamRPN++: adapt both inputs, correlate channel-wise, mix with 1x1 convs.

    Parameters: ``conv_kernel`` and ``conv_search`` (conv-BN-ReLU) and ``head``
    (conv1x1-BN-ReLU-conv1x1 with bias), as in pysot.
    """

    def __init__(self, in_channels: int, hidden: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv_kernel = _conv_bn_relu(in_channels, hidden, kernel_size)
        self.conv_search = _conv_bn_relu(in_channels, hidden, kernel_size)
        self.head = nn.Sequential(
            nn.Conv2d(hidden, hidden, kernel_size=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out_channels, kernel_size=1),
        )

    def template(self, z_f: torch.Tensor) -> torch.Tensor:
        """Adapted template features (the depthwise kernel)."""
        return self.conv_kernel(z_f)

    def search(self, kernel: torch.Tensor, x_f: torch.Tensor) -> torch.Tensor:
        """Head output for search features ``x_f`` given the adapted template ``kernel``."""
        return self.head(xcorr_depthwise(self.conv_search(x_f), kernel))

    def forward(self, z_f: torch.Tensor, x_f: torch.Tensor) -> torch.Tensor:
        return self.search(self.template(z_f), x_f)


class DepthwiseRPN(nn.Module):
    """SiamRPN++ head: two :class:`DepthwiseXCorr` branches, ``cls`` (2K) and ``loc`` (4K)."""

    def __init__(self, anchor_num: int = 5, in_channels: int = 256, out_channels: int = 256) -> None:
        super().__init__()
        self.anchor_num = anchor_num
        self.cls = DepthwiseXCorr(in_channels, out_channels, 2 * anchor_num)
        self.loc = DepthwiseXCorr(in_channels, out_channels, 4 * anchor_num)

    def template(self, z_f: torch.Tensor) -> RPNOutput:
        """Adapted template kernels ``(cls_kernel, loc_kernel)``."""
        return self.cls.template(z_f), self.loc.template(z_f)

    def search(self, kernels: RPNOutput, x_f: torch.Tensor) -> RPNOutput:
        """``(cls, loc)`` maps for search features ``x_f``."""
        return self.cls.search(kernels[0], x_f), self.loc.search(kernels[1], x_f)

    def forward(self, z_f: torch.Tensor, x_f: torch.Tensor) -> RPNOutput:
        return self.search(self.template(z_f), x_f)

    def output_scalers(self) -> list[OutputScaler]:
        """Layers whose weight and bias scale the ``cls`` / ``loc`` outputs linearly."""
        return [("cls", None, [self.cls.head[-1]]), ("loc", None, [self.loc.head[-1]])]


class MultiRPN(nn.Module):
    """Fusion of one :class:`DepthwiseRPN` per backbone level (pysot ``MultiRPN``).

    Levels are modules ``rpn2``, ``rpn3``, ... (pysot numbers them from 2). With ``weighted=True``
    the outputs are averaged with ``softmax(cls_weight)`` / ``softmax(loc_weight)``; otherwise
    with equal weights.
    """

    def __init__(self, anchor_num: int = 5, in_channels: Sequence[int] = (256, 256, 256),
                 weighted: bool = False) -> None:
        super().__init__()
        self.anchor_num = anchor_num
        self.weighted = weighted
        self.levels = len(in_channels)
        for index, channels in enumerate(in_channels):
            self.add_module(f"rpn{index + 2}", DepthwiseRPN(anchor_num, channels, channels))
        if weighted:
            self.cls_weight = nn.Parameter(torch.ones(self.levels))
            self.loc_weight = nn.Parameter(torch.ones(self.levels))

    def level(self, index: int) -> DepthwiseRPN:
        """The head of level ``index`` (0-based)."""
        return getattr(self, f"rpn{index + 2}")

    def template(self, z_fs: Sequence[torch.Tensor]) -> list[RPNOutput]:
        """Per-level adapted template kernels."""
        return [self.level(i).template(z_f) for i, z_f in enumerate(z_fs)]

    def search(self, kernels: Sequence[RPNOutput], x_fs: Sequence[torch.Tensor]) -> RPNOutput:
        """Fused ``(cls, loc)`` over all levels."""
        outputs = [self.level(i).search(k, x_f) for i, (k, x_f) in enumerate(zip(kernels, x_fs, strict=True))]
        cls_w, loc_w = self.fusion_weights(outputs[0][0])
        cls = sum(w * out[0] for w, out in zip(cls_w, outputs, strict=True))
        loc = sum(w * out[1] for w, out in zip(loc_w, outputs, strict=True))
        return cls, loc  # type: ignore[return-value]

    def fusion_weights(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Level weights ``(cls, loc)``, each summing to 1."""
        if self.weighted:
            return F.softmax(self.cls_weight, dim=0), F.softmax(self.loc_weight, dim=0)
        even = torch.full((self.levels,), 1.0 / self.levels, dtype=like.dtype, device=like.device)
        return even, even

    def forward(self, z_fs: Sequence[torch.Tensor], x_fs: Sequence[torch.Tensor]) -> RPNOutput:
        return self.search(self.template(z_fs), x_fs)

    def output_scalers(self) -> list[OutputScaler]:
        """The last layers of every level (the fused output is a convex sum of the levels')."""
        levels = [self.level(i) for i in range(self.levels)]
        return [("cls", None, [level.cls.head[-1] for level in levels]),
                ("loc", None, [level.loc.head[-1] for level in levels])]
