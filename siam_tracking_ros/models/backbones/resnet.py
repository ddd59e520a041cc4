"""ResNet-50 with dilated layers 3-4 (output stride 8), as in pysot's ``resnet_atrous`` / SiamMask.

Differences to the ImageNet ResNet that matter for the Siamese trackers: the stem convolution
has no padding, stride-2 stages use un-padded 3x3 convolutions (also in the shortcut), and
layers 3 and 4 keep the resolution of layer 2 with dilations 2 and 4. A 127 template gives 15x15
maps in layers 2-4 (7x7 after the adjust layer's centre crop); a 255 search region gives 31x31.

Parameter names follow pysot (``conv1``, ``bn1``, ``layer1.0.conv1`` ... ``layerN.0.downsample.0``).
The module takes float BGR in 0..255 and does not normalise (the trackers were trained that way).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from siam_tracking_ros.models.backbones.common import checked_levels

#: channels of the stem and of layers 1-4 (Bottleneck expansion 4)
RESNET50_CHANNELS = (64, 256, 512, 1024, 2048)
_BLOCKS = (3, 4, 6, 3)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided or dilated) -> 1x1 residual block with expansion 4."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        if stride != 1 and dilation != 1:
            raise ValueError("a block is either strided or dilated, not both")
        padding = 0 if stride == 2 else dilation
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=padding,
                               dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


def _shortcut(in_channels: int, out_channels: int, stride: int, dilation: int) -> nn.Sequential:
    """Projection shortcut: 1x1 where nothing changes but channels, else a 3x3 like pysot's."""
    if stride == 1 and dilation == 1:
        conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
    else:
        rate = max(dilation // 2, 1)
        padding = rate if dilation > 1 else 0
        conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=padding,
                         dilation=rate, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels))


def _stage(in_channels: int, planes: int, blocks: int, stride: int = 1, dilation: int = 1
           ) -> nn.Sequential:
    """One ResNet stage; its first block enters with half the dilation (pysot's rule)."""
    out_channels = planes * Bottleneck.expansion
    shortcut = None
    if stride != 1 or in_channels != out_channels:
        shortcut = _shortcut(in_channels, out_channels, stride, dilation)
    first_dilation = max(dilation // 2, 1) if shortcut is not None else dilation
    layers = [Bottleneck(in_channels, planes, stride, first_dilation, shortcut)]
    layers += [Bottleneck(out_channels, planes, 1, dilation) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class DilatedResNet50(nn.Module):
    """pysot ``resnet50(used_layers=...)``: returns the maps of ``used_layers`` as a list.

    Layer indices: 0 = stem after ReLU (before max-pool, 64 ch, stride 2), 1-4 = ResNet stages
    (256/512/1024/2048 ch, strides 4/8/8/8). Stages beyond ``max(used_layers)`` are not built,
    so ``used_layers=(0, 1, 2, 3)`` (SiamMask) has no ``layer4`` parameters.
    """

    #: output stride (the late stages are dilated)
    stride = 8

    def __init__(self, used_layers: Sequence[int] = (2, 3, 4)) -> None:
        super().__init__()
        self.used_layers = used = checked_levels(used_layers, 4)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=0, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = _stage(64, 64, _BLOCKS[0])
        self.layer2 = _stage(256, 128, _BLOCKS[1], stride=2)
        depth = max(max(used), 2)
        if depth >= 3:
            self.layer3 = _stage(512, 256, _BLOCKS[2], dilation=2)
        if depth >= 4:
            self.layer4 = _stage(1024, 512, _BLOCKS[3], dilation=4)
        self._depth = depth
        self._init_weights()

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels of each returned map, in ``used_layers`` order."""
        return tuple(RESNET50_CHANNELS[i] for i in self.used_layers)

    def _init_weights(self) -> None:
        """pysot's init: conv weights ~ N(0, 2 / fan_out), BN identity (skipped on ``meta``)."""
        if self.conv1.weight.is_meta:
            return
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        maps = [stem, self.layer1(self.maxpool(stem))]
        maps.append(self.layer2(maps[1]))
        if self._depth >= 3:
            maps.append(self.layer3(maps[2]))
        if self._depth >= 4:
            maps.append(self.layer4(maps[3]))
        return [maps[i] for i in self.used_layers]
