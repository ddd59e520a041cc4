"""RASNet (Wang et al., CVPR 2018): SiamFC with attention-weighted cross-correlation.

From the exemplar features the network computes a dual spatial attention ``γ = ρ̄ + ρ̃`` (a learned
general map plus a residual map predicted from the exemplar) and a channel attention ``β``
(global pooling + MLP + sigmoid), see :mod:`~siam_tracking_ros.models.heads.attention`. The
response is ``Σ_c β_c Σ_ij γ_ij z_cij x_c(i + u, j + v)`` followed by a learned scale and bias;
the weights are folded into the template once at init, so tracking costs what SiamFC costs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from siam_tracking_ros.models.assembly import PartSpec, SiameseNet
from siam_tracking_ros.trackers.registry import register_tracker
from siam_tracking_ros.trackers.siamfc import SiamFCConfig, SiamFCTracker, exemplar_map_size, siamfc_spec


@dataclass
class RASNetConfig(SiamFCConfig):
    """SiamFC options and hyper-parameters plus the attention modules'."""

    #: width of the residual-attention encoder-decoder
    attention_hidden: int = 64
    #: bottleneck ratio of the channel-attention MLP
    channel_reduction: int = 4


class RASNetNet(SiameseNet):
    """AlexNet + attention (template transform ``attention``) + the ``fc`` head.

    ``template`` returns the attention-weighted kernel ``β_c γ_ij z_cij``; correlating it is the
    weighted cross-correlation.
    """

    head_kind = "fc"

    def __init__(self, config: RASNetConfig) -> None:
        attention = PartSpec("rasnet_attention", {"template_size": exemplar_map_size(config),
                                                  "hidden": config.attention_hidden,
                                                  "reduction": config.channel_reduction})
        super().__init__(siamfc_spec(config, transform=attention, transform_name="attention"))


@register_tracker("rasnet", RASNetConfig,
                  description="RASNet: residual + general spatial and channel attention in a weighted xcorr")
def build_rasnet(config: RASNetConfig, device: torch.device) -> SiamFCTracker:
    """Build SiamFC tracking around an untrained :class:`RASNetNet` (attention computed at init)."""
    return SiamFCTracker(RASNetNet(config), config, device)
