"""AlexNet backbones of SiamFC, SiamRPN and DaSiamRPN in one parameterised module.

Five stages ``conv1`` ... ``conv5``, each ``nn.Sequential(Conv2d, BatchNorm2d?, ReLU?, MaxPool?)``
(index 0 is the convolution and index 1 its batch norm). Stages 1-2 end with a 3x3/2 max-pool,
stages 1-4 with ReLU; total stride 8, no padding: 127 -> 6x6, 255 -> 22x22.

Known layouts (see :func:`siamfc_alexnet`, :func:`pysot_alexnet`):

- siamfc-pytorch ``AlexNetV1``: widths 96-256-384-384-256, ``groups=2`` in conv2/4/5, BN eps 1e-6,
  no BN after conv5;
- pysot ``AlexNetLegacy``/``AlexNet`` and DaSiamRPN ``SiamRPN(size)``: widths
  ``int(w * width_mult)``, no groups, BN eps 1e-5, BN after conv5. DaSiamRPN's ``SiamRPNBIG`` is
  ``width_mult=2`` (192-512-768-768-512); ``SiamRPNvot``/``SiamRPNotb`` are ``width_mult=1``.

The reference code applies max-pool and ReLU in either order; both commute, so outputs match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

BASE_WIDTHS = (96, 256, 384, 384, 256)


@dataclass(frozen=True)
class AlexNetLayout:
    """Architecture of one AlexNet variant."""

    widths: tuple[int, ...] = BASE_WIDTHS
    groups: tuple[int, ...] = (1, 1, 1, 1, 1)
    last_bn: bool = True
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1


def siamfc_alexnet() -> AlexNetLayout:
    """siamfc-pytorch ``AlexNetV1``."""
    return AlexNetLayout(BASE_WIDTHS, (1, 2, 1, 2, 2), last_bn=False, bn_eps=1e-6, bn_momentum=0.05)


def pysot_alexnet(width_mult: float = 1.0) -> AlexNetLayout:
    """pysot ``AlexNetLegacy``/``AlexNet`` with ``width_mult`` (= DaSiamRPN ``size``)."""
    return AlexNetLayout(tuple(int(w * width_mult) for w in BASE_WIDTHS))


_KERNELS = (11, 5, 3, 3, 3)
_STRIDES = (2, 1, 1, 1, 1)


class AlexNet(nn.Module):
    """Stride-8 AlexNet feature extractor; ``forward(x (B,3,H,W)) -> (B, widths[-1], h, w)``.

    ``depth < 5`` builds only stages ``conv1 .. conv{depth}`` (stride 4 after conv1).
    """

    def __init__(self, layout: AlexNetLayout | None = None, depth: int = 5) -> None:
        super().__init__()
        self.layout = layout or pysot_alexnet()
        if not 1 <= depth <= len(self.layout.widths):
            raise ValueError(f"AlexNet depth must be 1..{len(self.layout.widths)}, got {depth}")
        self.depth = depth
        self.stride = alexnet_stride(depth)
        self.out_channels = self.layout.widths[depth - 1]
        in_channels = 3
        for index, width in enumerate(self.layout.widths[:depth]):
            self.add_module(f"conv{index + 1}", self._stage(index, in_channels, width))
            in_channels = width

    def _stage(self, index: int, in_channels: int, width: int) -> nn.Sequential:
        layout = self.layout
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, _KERNELS[index], _STRIDES[index],
                                             groups=layout.groups[index])]
        last = index == len(layout.widths) - 1
        if not last or layout.last_bn:
            layers.append(nn.BatchNorm2d(width, eps=layout.bn_eps, momentum=layout.bn_momentum))
        if not last:
            layers.append(nn.ReLU(inplace=True))
        if index < 2:
            layers.append(nn.MaxPool2d(3, 2))
        return nn.Sequential(*layers)

    def __len__(self) -> int:
        """Number of stages built (``depth``)."""
        return self.depth

    def stages(self) -> Sequence[nn.Sequential]:
        """``conv1`` ... ``conv5``."""
        return [getattr(self, f"conv{i + 1}") for i in range(self.depth)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages():
            x = stage(x)
        return x



STAGE_NAMES = ("conv1", "conv2", "conv3", "conv4", "conv5")


def make_alexnet(backbone: str, width_mult: float = 1.0) -> AlexNet:
    """SiamFC AlexNet for ``backbone = siamfc|pysot`` (see the module docstring)."""
    if backbone == "siamfc":
        return AlexNet(siamfc_alexnet())
    if backbone == "pysot":
        return AlexNet(pysot_alexnet(width_mult))
    raise ValueError(f"unknown backbone '{backbone}' (siamfc|pysot)")


def stage_index(name: str) -> int:
    """``conv1`` -> 1 ... ``conv5`` -> 5; raises ``ValueError`` naming the valid stages."""
    if name not in STAGE_NAMES:
        raise ValueError(f"unknown AlexNet stage '{name}'; valid: {', '.join(STAGE_NAMES)}")
    return STAGE_NAMES.index(name) + 1


def alexnet_output_size(size: int, depth: int = 5) -> int:
    """Side of the AlexNet feature map after stage ``depth`` for a ``size x size`` input."""
    for index in range(depth):
        size = (size - _KERNELS[index]) // _STRIDES[index] + 1
        if index < 2:  # 3x3/2 max-pool
            size = (size - 3) // 2 + 1
    return size


def alexnet_stride(depth: int = 5) -> int:
    """Total stride of AlexNet after stage ``depth`` (4 after conv1, 8 from conv2 on)."""
    return 4 if depth == 1 else 8


def stage_outputs(backbone: AlexNet, image: torch.Tensor, names: tuple[str, ...]) -> list[torch.Tensor]:
    """Outputs of the named stages of ``backbone`` (one pass, stopping at the deepest one)."""
    wanted = {stage_index(n): n for n in names}
    found: dict[str, torch.Tensor] = {}
    x = image
    for index, stage in enumerate(backbone.stages()[:max(wanted)], start=1):
        x = stage(x)
        if index in wanted:
            found[wanted[index]] = x
    return [found[n] for n in names]


class AlexNetLevels(nn.Module):
    """AlexNet returning ``[conv5, conv4, conv3][:levels]`` (deepest first)."""

    def __init__(self, width_mult: float = 1.0, levels: int = 3) -> None:
        super().__init__()
        self.alexnet = AlexNet(pysot_alexnet(width_mult))
        self.levels = levels
        self.stride = self.alexnet.stride
        widths = self.alexnet.layout.widths
        self.channels = tuple(widths[4 - i] for i in range(levels))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for stage in self.alexnet.stages():
            x = stage(x)
            outputs.append(x)
        return [outputs[4 - i] for i in range(self.levels)]


#: index of each stage's conv and batch norm inside pysot's ``features`` / DaSiamRPN's
#: ``featureExtract`` sequential: (conv, bn) per stage
SEQUENTIAL_INDICES = ((0, 1), (4, 5), (8, 9), (11, 12), (14, 15))


def sequential_to_stages(state: Mapping[str, torch.Tensor], source: str, target: str
                         ) -> dict[str, torch.Tensor]:
    """Rename ``{source}.{i}.*`` (pysot/DaSiamRPN sequential) to ``{target}.conv{n}.{0|1}.*``.

    Raises ``KeyError`` naming the first key that has no place in the five-stage layout.
    """
    index_map = {}
    for stage, (conv, bn) in enumerate(SEQUENTIAL_INDICES, start=1):
        index_map[conv] = f"{target}.conv{stage}.0"
        index_map[bn] = f"{target}.conv{stage}.1"
    out = {}
    for key, value in state.items():
        if not key.startswith(source + "."):
            continue
        index, _, rest = key[len(source) + 1:].partition(".")
        if not index.isdigit() or int(index) not in index_map:
            raise KeyError(f"'{key}' does not fit the AlexNet layout (layer {index} is not a conv/bn)")
        out[f"{index_map[int(index)]}.{rest}"] = value
    return out
