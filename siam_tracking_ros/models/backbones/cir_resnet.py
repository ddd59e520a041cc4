"""SiamDW CIResNet-22: residual units that crop the padding-affected ring inside the unit.

Zhang & Peng, "Deeper and Wider Siamese Networks for Real-Time Visual Tracking" (CVPR 2019).
A cropping-inside residual unit (CIR) is a bottleneck (1x1, 3x3 with padding 1, 1x1) whose sum
with the shortcut is cropped by one feature on every side: exactly the ring that the 3x3 zero
padding touched, so the remaining features are those a padding-free network would compute.
The downsampling variant (CIR-D) runs the 3x3 conv and the shortcut with stride 1, crops, then
downsamples with a 2x2 max-pool. Layout (stride 8, receptive field 93 = 0.73 x 127):

    conv 7x7/2 (pad 3) - BN - ReLU - crop 2 - maxpool 2/2
    stage 1: 3 CIR units, 64 -> 256 channels
    stage 2: CIR-D (128 -> 512, crop, maxpool 2/2) + 3 CIR units (the last without ReLU)

Output sizes: 127 -> 5x5, 255 -> 21x21 (SiamFC score 17x17).
"""

from __future__ import annotations

import torch
from torch import nn


def crop_border(x: torch.Tensor, width: int) -> torch.Tensor:
    """Remove ``width`` features from every side of a ``(B, C, H, W)`` map."""
    return x[:, :, width:-width, width:-width]


class CIRUnit(nn.Module):
    """Bottleneck residual unit with an inside crop (CIR), optionally downsampling (CIR-D).

    Args:
        in_channels: input channels.
        planes: bottleneck width; the unit outputs ``4 * planes`` channels.
        last_relu: apply ReLU after the residual addition (off for the backbone's last unit).
        downsample: CIR-D: 2x2 max-pool after the crop (the stride is moved out of the convs).
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, last_relu: bool = True,
                 downsample: bool = False) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                          nn.BatchNorm2d(out_channels))
        self.last_relu = last_relu
        self.pool: nn.Module = nn.MaxPool2d(2, 2) if downsample else nn.Identity()

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The bottleneck branch (before the addition)."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.residual(x) + self.shortcut(x)
        if self.last_relu:
            out = self.relu(out)
        return self.pool(crop_border(out, 1))


class CIResNet22(nn.Module):
    """CIResNet-22 feature extractor (stride 8, 512 output channels).

    Args:
        stage_blocks: units per stage (paper: 3 and 4).
        widths: bottleneck widths per stage (paper: 64 and 128).
    """

    stride = 8
    #: the padding-free receptive field of one output feature, in input pixels
    receptive_field = 93

    def __init__(self, stage_blocks: tuple[int, int] = (3, 4), widths: tuple[int, int] = (64, 128)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2, 2)
        self.layer1 = self._stage(64, widths[0], stage_blocks[0], downsample=False, last_relu=True)
        self.layer2 = self._stage(widths[0] * 4, widths[1], stage_blocks[1], downsample=True,
                                  last_relu=False)
        self.out_channels = widths[1] * CIRUnit.expansion
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _stage(in_channels: int, planes: int, blocks: int, downsample: bool,
               last_relu: bool) -> nn.Sequential:
        units = [CIRUnit(in_channels, planes, last_relu=True, downsample=downsample)]
        for index in range(1, blocks):
            units.append(CIRUnit(planes * 4, planes, last_relu=last_relu if index == blocks - 1 else True))
        return nn.Sequential(*units)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """conv1 (7x7/2, pad 3) + BN + ReLU, crop of the 2 padding-affected outputs, 2x2 pool."""
        out = self.relu(self.bn1(self.conv1(x)))
        return self.pool(crop_border(out, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(self.layer1(self.stem(x)))


class CIRNeck(nn.Module):
    """CIR units over a pretrained backbone's maps (SiamDW's units on a padded backbone).

    Each unit crops the ring its 3x3 padding touched, so ``units`` units take an 8x8 exemplar map
    to ``8 - 2 units`` and a 16x16 search map to ``16 - 2 units`` (the score map stays 9x9 and its
    centre on the crops' centres). The last unit has no ReLU, as in CIResNet's last stage.
    ``crop`` (the assembly's template flag) changes nothing: every map is cropped alike.
    """

    def __init__(self, in_channels: int, planes: int = 32, units: int = 1) -> None:
        super().__init__()
        if units < 1:
            raise ValueError(f"CIRNeck needs at least one unit, got {units}")
        layers = [CIRUnit(in_channels if i == 0 else planes * CIRUnit.expansion, planes,
                          last_relu=i < units - 1) for i in range(units)]
        self.units = nn.Sequential(*layers)
        self.out_channels = planes * CIRUnit.expansion

    def forward(self, x: torch.Tensor, crop: bool = False) -> torch.Tensor:
        return self.units(x)
