"""CFNet (Valmadre et al., CVPR 2017): a differentiable correlation-filter layer in the template branch.

The template image is a search-sized crop around the target; its features (cut after the
AlexNet stage ``cf_layer``: CFNet-conv1/conv2/conv5) pass through
:class:`~siam_tracking_ros.models.heads.cf_layer.CorrelationFilterLayer` (cosine window, closed-form
ridge regression in the Fourier domain against a Gaussian label, crop to the exemplar window),
and the resulting filter is cross-correlated with the search features, followed by a learned
scale and bias (:class:`~siam_tracking_ros.models.heads.fc.FCHead`). Tracking is SiamFC's
multi-scale search; after every frame the filter is updated as a moving average with rate
``template_lr`` from a template crop at the new position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from siam_tracking_ros.core.result import TrackResult
from siam_tracking_ros.models.assembly import PartSpec, SiameseNet
from siam_tracking_ros.models.backbones.alexnet import (
    alexnet_stride,
    stage_index,
)
from siam_tracking_ros.trackers.registry import register_tracker
from siam_tracking_ros.trackers.seed_fc_common import ContextTemplateTracker
from siam_tracking_ros.trackers.siamfc import SiamFCConfig, exemplar_map_size, siamfc_spec


@dataclass
class CFNetConfig(SiamFCConfig):
    """SiamFC options and hyper-parameters plus the CF layer's.

    ``total_stride`` is derived from ``cf_layer`` (4 after conv1, 8 otherwise).
    """

    #: AlexNet stage the CF block sits on (the network ends there): conv1|conv2|conv5 (conv3/4 work too)
    cf_layer: str = "conv5"
    #: ridge regulariser λ of the closed-form filter
    cf_lambda: float = 0.1
    #: Gaussian label σ as a fraction of the exemplar window (in feature cells)
    cf_sigma: float = 0.125
    #: the filter's correlation output is roughly in 0..1: start the learned scale at 1
    out_scale: float = 1.0
    #: moving-average rate of the online template (filter) update; 0 disables it
    template_lr: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backbone != "mobilenetv2":  # (its stride is set by SiamFCConfig)
            self.total_stride = alexnet_stride(stage_index(self.cf_layer))


class CFNetNet(SiameseNet):
    """AlexNet cut at ``cf_layer`` + CF layer (template transform ``cf``) + the ``fc`` head.

    ``template`` returns the correlation filter ``(B, C, k, k)`` learned from the template crop
    (any size >= exemplar).
    """

    head_kind = "fc"

    def __init__(self, config: CFNetConfig) -> None:
        depth = stage_index(config.cf_layer)
        if config.backbone == "mobilenetv2":
            depth = 5  # the whole backbone; cf_layer names AlexNet stages
        cf = PartSpec("correlation_filter", {"crop_size": exemplar_map_size(config, depth),
                                             "lam": config.cf_lambda, "sigma_fraction": config.cf_sigma})
        super().__init__(siamfc_spec(config, depth, transform=cf, transform_name="cf"))


class CFNetTracker(ContextTemplateTracker):
    """SiamFC multi-scale tracking with a CF template updated online (rate ``template_lr``)."""

    config: CFNetConfig

    def _track(self, frame: np.ndarray) -> TrackResult:
        result = super()._track(frame)
        if self.config.template_lr > 0:
            self.update_template(frame)
        return result

    def update_template(self, frame: np.ndarray) -> None:
        """``filter <- (1 - lr) filter + lr * CF(template crop at the current state)``."""
        assert self._kernel is not None
        rate = self.config.template_lr
        fresh = self.model.template(self.template_crop(self.upload(frame)))
        self._kernel.mul_(1.0 - rate).add_(fresh, alpha=rate)


@register_tracker("cfnet", CFNetConfig,
                  description="CFNet: closed-form correlation-filter layer in the template branch")
def build_cfnet(config: CFNetConfig, device: torch.device) -> CFNetTracker:
    """Build a :class:`CFNetTracker` with an untrained :class:`CFNetNet`."""
    return CFNetTracker(CFNetNet(config), config, device)
