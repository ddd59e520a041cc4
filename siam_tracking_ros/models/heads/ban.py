"""Box-adaptive (anchor-free) heads of NanoTrack v1/v2/v3.

Every head maps template features ``zf (B, C, 8, 8)`` and search features ``xf (B, C, 16, 16)``
to a classification map ``cls (B, 2, S, S)`` (background/foreground logits) and ``loc
(B, 4, S, S)``: positive distances (left, top, right, bottom) from each point to the box edges,
in search-crop pixels. The template-side layers run in :meth:`prepare` (once per target) and the
search side in :meth:`correlate`; ``forward`` chains both. Module names follow the official
checkpoints (``corr_pw_cls``, ``CA_layer``, ``cls_tower``, ...).

- v1: one shared pixel-wise correlation (``zf`` used as is) + channel attention; separable
  towers (dw kxk, pw, BN, ReLU6) of widths 128 (cls) and 96 (loc).
- v2: separate cls/loc pixel-wise correlations with 1x1 conv+BN adjustments; six-layer towers.
- v3: pixel-wise correlation (refined by a 2x2 dw conv) concatenated with depthwise correlation
  against the central 4x4 of the template, fused by 1x1 convs; score map 15x15.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from siam_tracking_ros.models.heads.xcorr import xcorr_depthwise, xcorr_pointwise

TemplateFeatures = dict[str, torch.Tensor]


def conv_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 conv (with bias) + BN: the adjustment applied before each correlation."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels))


class ChannelAttention(nn.Module):
    """Squeeze-excitation style gate over correlation channels (sigmoid of two 1x1 convs)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels, channels, 1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


class PixelwiseCorrelation(nn.Module):
    """Pixel-wise correlation (one output channel per template cell) + channel attention.

    ``adjust`` adds 1x1 conv+BN on both inputs (v2/v3); ``refine`` appends a 2x2 depthwise conv
    block that shrinks the map by one cell (v3).
    """

    def __init__(self, in_channels: int, template_cells: int = 64, adjust: bool = True,
                 refine: bool = False) -> None:
        super().__init__()
        self.adjust = adjust
        if adjust:
            self.conv_kernel = conv_bn(in_channels, in_channels)
            self.conv_search = conv_bn(in_channels, in_channels)
        self.CA_layer = ChannelAttention(template_cells)
        self.conv = nn.Sequential(
            nn.Conv2d(template_cells, template_cells, 2, groups=template_cells, bias=False),
            nn.BatchNorm2d(template_cells), nn.ReLU6(inplace=True),
            nn.Conv2d(template_cells, template_cells, 1), nn.BatchNorm2d(template_cells),
        ) if refine else None

    def prepare(self, zf: torch.Tensor) -> torch.Tensor:
        return self.conv_kernel(zf) if self.adjust else zf

    def correlate(self, kernel: torch.Tensor, xf: torch.Tensor) -> torch.Tensor:
        search = self.conv_search(xf) if self.adjust else xf
        out = self.CA_layer(xcorr_pointwise(search, kernel))
        return self.conv(out) if self.conv is not None else out


class DepthwiseCorrelation(nn.Module):
    """1x1 conv+BN on both inputs, then depthwise correlation with one cell of zero padding."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv_kernel = conv_bn(in_channels, out_channels)
        self.conv_search = conv_bn(in_channels, out_channels)

    def prepare(self, zf: torch.Tensor) -> torch.Tensor:
        return self.conv_kernel(zf)

    def correlate(self, kernel: torch.Tensor, xf: torch.Tensor) -> torch.Tensor:
        return xcorr_depthwise(F.pad(self.conv_search(xf), (1, 1, 1, 1)), kernel)


def separable_tower(in_channels: int, width: int, kernels: Sequence[int]) -> nn.Sequential:
    """v1/v2 tower: per layer ``[dw kxk (no BN), pw, BN, ReLU6]``; first pw widens to ``width``."""
    layers: list[nn.Module] = []
    channels = in_channels
    for kernel in kernels:
        layers += [nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels, bias=False),
                   nn.Conv2d(channels, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU6(inplace=True)]
        channels = width
    return nn.Sequential(*layers)


def bn_separable_tower(channels: int, depth: int) -> nn.Sequential:
    """v3 tower: per layer ``[dw 3x3, BN, ReLU6, pw linear, BN]``."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
                   nn.BatchNorm2d(channels), nn.ReLU6(inplace=True),
                   nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels)]
    return nn.Sequential(*layers)


def predictor(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1))


#: untrained heads start predicting this l/t/r/b distance (search-crop pixels): about half a
#: typical target, so that IoU losses have a gradient from the first step of training from scratch
INITIAL_BOX_DISTANCE = 32.0


def box_predictor(in_channels: int) -> nn.Sequential:
    """1x1 conv giving log l/t/r/b distances (``exp`` applied by the head), bias at a sane size."""
    head = predictor(in_channels, 4)
    nn.init.constant_(head[0].bias, math.log(INITIAL_BOX_DISTANCE))
    return head


class BANHead(nn.Module):
    """What the three heads share: :meth:`prepare` (template side, once per target) and
    :meth:`correlate` (search side); ``template``/``search`` are the assembly's names for them
    (:mod:`siam_tracking_ros.models.assembly`), ``forward`` chains both."""

    def prepare(self, zf: torch.Tensor) -> TemplateFeatures:
        raise NotImplementedError

    def correlate(self, template: TemplateFeatures, xf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def template(self, zf: torch.Tensor) -> TemplateFeatures:
        return self.prepare(zf)

    def search(self, template: TemplateFeatures, xf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.correlate(template, xf)

    def forward(self, zf: torch.Tensor, xf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.correlate(self.prepare(zf), xf)


class BANHeadV1(BANHead):
    """NanoTrack v1 head: shared pixel-wise correlation, towers of width 128 (cls) / 96 (loc)."""

    def __init__(self, in_channels: int = 48, template_cells: int = 64) -> None:
        super().__init__()
        self.corr_pw = PixelwiseCorrelation(in_channels, template_cells, adjust=False)
        self.cls_tower = separable_tower(template_cells, 128, (5, 5, 3))
        self.bbox_tower = separable_tower(template_cells, 96, (3, 3, 5, 5))
        self.cls_logits = predictor(128, 2)
        self.bbox_pred = box_predictor(96)

    def prepare(self, zf: torch.Tensor) -> TemplateFeatures:
        return {"kernel": self.corr_pw.prepare(zf)}

    def correlate(self, template: TemplateFeatures, xf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        corr = self.corr_pw.correlate(template["kernel"], xf)
        return self.cls_logits(self.cls_tower(corr)), torch.exp(self.bbox_pred(self.bbox_tower(corr)))


class BANHeadV2(BANHead):
    """NanoTrack v2 head: separate adjusted pixel-wise correlations, six-layer 3x3 towers."""

    def __init__(self, in_channels: int = 48, template_cells: int = 64, width: int = 96) -> None:
        super().__init__()
        self.corr_pw_reg = PixelwiseCorrelation(in_channels, template_cells)
        self.corr_pw_cls = PixelwiseCorrelation(in_channels, template_cells)
        self.cls_pw_tower = separable_tower(template_cells, width, (3,) * 6)
        self.bbox_pw_tower = separable_tower(template_cells, width, (3,) * 6)
        self.cls_pred = predictor(width, 2)
        self.bbox_pred = box_predictor(width)

    def prepare(self, zf: torch.Tensor) -> TemplateFeatures:
        return {"cls": self.corr_pw_cls.prepare(zf), "reg": self.corr_pw_reg.prepare(zf)}

    def correlate(self, template: TemplateFeatures, xf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cls = self.cls_pred(self.cls_pw_tower(self.corr_pw_cls.correlate(template["cls"], xf)))
        reg = self.bbox_pred(self.bbox_pw_tower(self.corr_pw_reg.correlate(template["reg"], xf)))
        return cls, torch.exp(reg)


class BANHeadV3(BANHead):
    """NanoTrack v3 head: pixel-wise + depthwise correlation, fused by 1x1 convs (15x15 maps)."""

    def __init__(self, in_channels: int = 96, template_cells: int = 64, depth: int = 6,
                 center_cells: int = 4) -> None:
        super().__init__()
        self.center_cells = center_cells
        self.corr_dw_reg = DepthwiseCorrelation(in_channels, in_channels)
        self.corr_pw_reg = PixelwiseCorrelation(in_channels, template_cells, refine=True)
        self.corr_dw_cls = DepthwiseCorrelation(in_channels, in_channels)
        self.corr_pw_cls = PixelwiseCorrelation(in_channels, template_cells, refine=True)
        self.cls_tower = bn_separable_tower(in_channels, depth)
        self.bbox_tower = bn_separable_tower(in_channels, depth)
        self.cls_logits = predictor(in_channels, 2)
        self.bbox_pred = box_predictor(in_channels)
        self.down_reg = predictor(in_channels + template_cells, in_channels)
        self.down_cls = predictor(in_channels + template_cells, in_channels)

    def _center(self, zf: torch.Tensor) -> torch.Tensor:
        """The central ``center_cells`` x ``center_cells`` of the template features."""
        start = (zf.shape[-1] - self.center_cells) // 2
        stop = start + self.center_cells
        return zf[:, :, start:stop, start:stop]

    def prepare(self, zf: torch.Tensor) -> TemplateFeatures:
        center = self._center(zf)
        return {"pw_cls": self.corr_pw_cls.prepare(zf), "pw_reg": self.corr_pw_reg.prepare(zf),
                "dw_cls": self.corr_dw_cls.prepare(center), "dw_reg": self.corr_dw_reg.prepare(center)}

    def correlate(self, template: TemplateFeatures, xf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_cls = self.down_cls(torch.cat((self.corr_pw_cls.correlate(template["pw_cls"], xf),
                                         self.corr_dw_cls.correlate(template["dw_cls"], xf)), 1))
        x_reg = self.down_reg(torch.cat((self.corr_pw_reg.correlate(template["pw_reg"], xf),
                                         self.corr_dw_reg.correlate(template["dw_reg"], xf)), 1))
        return self.cls_logits(self.cls_tower(x_cls)), torch.exp(self.bbox_pred(self.bbox_tower(x_reg)))
