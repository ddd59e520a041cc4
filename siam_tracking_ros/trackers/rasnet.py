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
from torch import nn

from siam_tracking_ros.models.backbones.alexnet import alexnet_output_size, make_alexnet
from siam_tracking_ros.models.heads.attention import RASNetAttention
from siam_tracking_ros.models.heads.fc import FCHead
from siam_tracking_ros.trackers.registry import register_tracker
from siam_tracking_ros.trackers.siamfc import SiamFCConfig, SiamFCTracker


@dataclass
class RASNetConfig(SiamFCConfig):
    """SiamFC options and hyper-parameters plus the attention modules'."""

    #: width of the residual-attention encoder-decoder
    attention_hidden: int = 64
    #: bottleneck ratio of the channel-attention MLP
    channel_reduction: int = 4


class RASNetNet(nn.Module):
    """AlexNet + :class:`RASNetAttention` + :class:`FCHead`.

    ``template`` returns the attention-weighted kernel ``β_c γ_ij z_cij``; correlating it is the
    weighted cross-correlation.
    """

    head_kind = "fc"

    def __init__(self, config: RASNetConfig) -> None:
        super().__init__()
        self.input_rgb = config.input_rgb
        self.backbone = make_alexnet(config.backbone, config.width_mult)
        window = alexnet_output_size(config.exemplar_size)
        self.attention = RASNetAttention(self.backbone.out_channels, window, config.attention_hidden,
                                         config.channel_reduction)
        self.head = FCHead(config.out_scale)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """Backbone features of BGR 0..255 crops."""
        return self.backbone(image.flip(1) if self.input_rgb else image)

    def template(self, z: torch.Tensor) -> torch.Tensor:
        exemplar = self.features(z)
        spatial, channel = self.attention(exemplar)
        return exemplar * spatial * channel[:, :, None, None]

    def search(self, features: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"score": self.head(features, self.features(x))}

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.search(self.template(z), x)


@register_tracker("rasnet", RASNetConfig,
                  description="RASNet: residual + general spatial and channel attention in a weighted xcorr")
def build_rasnet(config: RASNetConfig, device: torch.device) -> SiamFCTracker:
    """Build SiamFC tracking around an untrained :class:`RASNetNet` (attention computed at init)."""
    return SiamFCTracker(RASNetNet(config), config, device)
