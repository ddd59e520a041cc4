"""ImageNet MobileNetV2 in torchvision's layout (``features.0-18``), cut at a stride-16 stage.

This is the layout of the pretrained files the project fetches from PyPI (see
:mod:`siam_tracking_ros.train.pretrained`): width 1.0, stem conv with padding 1, expansion-1 first
block without an expansion conv. ``features[:14]`` ends on the 96-channel stage at output stride
16: a 127 exemplar gives 8x8 maps and a 255 search crop 16x16, the geometry of NanoTrack's head.
The module takes float BGR in 0..255 (the trackers' convention) and applies ImageNet's RGB
normalisation itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from siam_tracking_ros.models.backbones.common import ResidualBlock

#: (expansion t, channels c, repeats n, stride s) of torchvision's inverted-residual stages
_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
           (6, 160, 3, 2), (6, 320, 1, 1))

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels as torchvision does (nearest multiple of 8, never below 90 % of value)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_bn_relu6(in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1,
                  groups: int = 1) -> nn.Sequential:
    """Conv (no bias) + BN + ReLU6, 'same' padding (torchvision's ``Conv2dNormActivation``)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, (kernel - 1) // 2, groups=groups,
                  bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(ResidualBlock):
    """(Expand 1x1) -> depthwise 3x3 -> project 1x1 (+ identity when shapes match)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_relu6(in_channels, hidden, kernel=1))
        layers += [conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)]
        self.conv = nn.Sequential(*layers)


class ImageNetMobileNetV2(nn.Module):
    """``features[:num_layers]`` of torchvision's MobileNetV2; returns one feature map.

    ``width`` scales every stage as torchvision's ``width_mult`` (pretrained files are 1.0).
    """

    def __init__(self, width: float = 1.0, num_layers: int = 14) -> None:
        super().__init__()
        if not 2 <= num_layers <= 18:
            raise ValueError(f"num_layers must be within 2..18, got {num_layers}")
        channels = _make_divisible(32 * width)
        layers: list[nn.Module] = [conv_bn_relu6(3, channels, stride=2)]
        for t, c, n, s in _STAGES:
            out_channels = _make_divisible(c * width)
            for index in range(n):
                layers.append(InvertedResidual(channels, out_channels, s if index == 0 else 1, t))
                channels = out_channels
        self.features = nn.Sequential(*layers[:num_layers])
        self.out_channels = self._channels_of(self.features[-1])
        self.stride = 2 ** sum(1 for layer in self.features if _stride_of(layer) == 2)
        self.register_buffer("scale", torch.ones(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", torch.zeros(1, 3, 1, 1), persistent=False)
        self._set_normalisation()

    @staticmethod
    def _channels_of(layer: nn.Module) -> int:
        convs = [m for m in layer.modules() if isinstance(m, nn.Conv2d)]
        return convs[-1].out_channels

    def _set_normalisation(self) -> None:
        """BGR 0..255 -> ImageNet-normalised RGB as one per-channel affine (after the swap)."""
        std = torch.tensor(IMAGENET_STD_RGB) * 255.0
        mean = torch.tensor(IMAGENET_MEAN_RGB) * 255.0
        self.scale.copy_((1.0 / std).view(1, 3, 1, 1))
        self.shift.copy_((-mean / std).view(1, 3, 1, 1))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """BGR 0..255 crops -> ImageNet-normalised RGB."""
        return x.flip(1) * self.scale + self.shift

    def first_layers(self, x: torch.Tensor, count: int) -> torch.Tensor:
        """``features[:count]`` of BGR 0..255 crops (what a frozen-feature cache stores)."""
        return self.features[:count](self.normalise(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.normalise(x))


class ImageNetMobileNetV2Levels(ImageNetMobileNetV2):
    """``features[:17]`` with the stride-32 stage kept at stride 16 (pysot's dilation for its
    SiamRPN++ MobileNetV2): block 14's depthwise conv runs at stride 1, blocks 15-16 dilate by 2,
    so the pretrained weights fit unchanged. Returns the maps after ``features[:14]`` (96 ch) and
    ``features[:17]`` (160 ch), both stride 16: 8x8 for a 127 exemplar, 16x16 for 255.

    :meth:`cached_maps` is the ``features[:14]`` map a frozen-feature cache stores and
    :meth:`levels_from` continues from it (training on a cache made for single-level variants).
    ``deepest_first`` returns the two maps the other way round (C-RPN's cascade order).
    """

    def __init__(self, width: float = 1.0, deepest_first: bool = False) -> None:
        super().__init__(width, num_layers=17)
        first = self.features[14].conv[1][0]
        first.stride = (1, 1)
        for block in (self.features[15], self.features[16]):
            depthwise = block.conv[1][0]
            depthwise.dilation, depthwise.padding = (2, 2), (2, 2)
        self.stride = 16
        self.deepest_first = deepest_first
        channels = [self._channels_of(self.features[13]), self._channels_of(self.features[16])]
        self.out_channels = channels[::-1] if deepest_first else channels

    def cached_maps(self, x: torch.Tensor) -> torch.Tensor:
        """``features[:14]`` of BGR 0..255 crops."""
        return self.first_layers(x, 14)

    def levels_from(self, maps: torch.Tensor) -> list[torch.Tensor]:
        """Both levels from the ``features[:14]`` map."""
        levels = [maps, self.features[14:](maps)]
        return levels[::-1] if self.deepest_first else levels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        return self.levels_from(self.cached_maps(x))


def _stride_of(layer: nn.Module) -> int:
    return max(m.stride[0] for m in layer.modules() if isinstance(m, nn.Conv2d))


#: the flat (pre-0.3 torchvision) block layout ``conv.{0,1,3,4,6,7}`` -> nested names
_FLAT_EXPAND = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}
_FLAT_NO_EXPAND = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}


def map_imagenet_mobilenetv2(state: Mapping[str, torch.Tensor], num_layers: int = 14
                             ) -> dict[str, torch.Tensor]:
    """A torchvision-style ImageNet MobileNetV2 state dict -> :class:`ImageNetMobileNetV2` keys.

    Accepts the nested layout (``features.2.conv.0.0.weight``) and the older flat one
    (``features.2.conv.0.weight``, expansion conv, dw conv and projection as ``conv.0-7``), drops
    the classifier and the layers past ``num_layers``. ``KeyError`` for anything else.
    """
    flat = any(re.fullmatch(r"features\.\d+\.conv\.[4-7]\.\w+", key) for key in state)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("classifier."):
            continue
        match = re.fullmatch(r"features\.(\d+)\.(.+)", key)
        if match is None:
            raise KeyError(f"not an ImageNet MobileNetV2 key: {key}")
        index, rest = int(match.group(1)), match.group(2)
        if index >= num_layers:
            continue
        if flat and index >= 1:
            part = re.fullmatch(r"conv\.(\d)\.(\w+)", rest)
            if part is None:
                raise KeyError(f"unexpected key in flat MobileNetV2 layout: {key}")
            table = _FLAT_NO_EXPAND if index == 1 else _FLAT_EXPAND
            rest = f"conv.{table[part.group(1)]}.{part.group(2)}"
        out[f"features.{index}.{rest}"] = value
    return out
