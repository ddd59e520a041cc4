"""Pieces shared by the SiamFC-derived variants (CFNet, DSiam, RASNet, SA-Siam, SiamBM).

Registers nothing: it holds the multi-stage AlexNet feature helper and the SiamFC tracker whose
template is taken from a search-sized context crop (CFNet, SA-Siam).
"""

from __future__ import annotations

import torch

from siam_tracking_ros.models.backbones.alexnet import AlexNet, pysot_alexnet, siamfc_alexnet
from siam_tracking_ros.trackers.siamfc import SiamFCTracker

STAGE_NAMES = ("conv1", "conv2", "conv3", "conv4", "conv5")


def make_alexnet(backbone: str, width_mult: float = 1.0) -> AlexNet:
    """SiamFC AlexNet for ``backbone = siamfc|pysot`` (see :mod:`..models.backbones.alexnet`)."""
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


_KERNELS = (11, 5, 3, 3, 3)
_STRIDES = (2, 1, 1, 1, 1)


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


class ContextTemplateTracker(SiamFCTracker):
    """SiamFC tracking whose template comes from a search-sized crop around the target.

    The template image covers the search region's extent (``x_sz``) at ``instance_size`` pixels,
    so its features have the scale of the search features and the usual ``exemplar_size`` window
    is their centre (AlexNet has no padding: 255 -> 22 cells, 127 -> the central 6). Used where the
    method learns from the context (CFNet's correlation filter, SA-Siam's channel attention).
    """

    def template_crop(self, image: torch.Tensor) -> torch.Tensor:
        """The search-sized template crop ``(1, 3, instance_size, instance_size)`` of ``image``."""
        crop = self.crop(image, self.center, self.x_sz, self.config.instance_size, self.avg_color)
        return crop.to(self.dtype)
