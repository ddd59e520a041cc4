"""The SiamFC tracker whose template is taken from a search-sized context crop (CFNet, SA-Siam).

Registers nothing. The AlexNet shape facts (stage names, output sizes, strides) live with the
backbone in :mod:`siam_tracking_ros.models.backbones.alexnet`.
"""

from __future__ import annotations

import torch

from siam_tracking_ros.trackers.siamfc import SiamFCTracker


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
