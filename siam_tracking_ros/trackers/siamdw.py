"""SiamDW (Zhang & Peng, CVPR 2019): SiamFC+ / SiamRPN+ on the CIResNet-22 backbone.

The backbone (:mod:`~siam_tracking_ros.models.backbones.cir_resnet`) crops the padding-affected
border inside every residual unit, keeps total stride 8 and a receptive field of 93 px (0.73 of
the 127 exemplar), and gives 5x5 template / 21x21 search features for 127 / 255 crops.
``head="fc"``: SiamFC cross-correlation (x 0.1 as SiamDW's ``Corr_Up``, a learnable 1x1 adjust
here) tracked exactly as :class:`~siam_tracking_ros.trackers.siamfc.SiamFCTracker`;
``head="rpn"``: SiamRPN up-channel head (512 -> 256 kernels, 5 anchors) tracked as
:class:`~siam_tracking_ros.trackers.siamrpn.SiamRPNTracker`. Defaults: SiamDW's OTB-2015
hyper-parameters. Our RPN classifier is the 2K-softmax of the shared head (SiamDW's own has K
sigmoid outputs), so official SiamRPN+ checkpoints do not load as is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from siam_tracking_ros.models.backbones.cir_resnet import CIResNet22
from siam_tracking_ros.models.heads.fc import FCHead
from siam_tracking_ros.models.heads.rpn import UpChannelRPN
from siam_tracking_ros.trackers.base import SiameseTracker
from siam_tracking_ros.trackers.registry import register_tracker
from siam_tracking_ros.trackers.siamfc import SiamFCTracker
from siam_tracking_ros.trackers.siamrpn import RPNNet, SiamRPNConfig, SiamRPNTracker

#: SiamDW's tuned window influence (OTB-2015) per head
_WINDOW_INFLUENCE = {"fc": 0.2897, "rpn": 0.39}


@dataclass
class SiamDWConfig(SiamRPNConfig):
    """CIResNet-22 + ``head`` (``fc`` or ``rpn``); the RPN fields come from SiamRPN's config."""

    head: str = "fc"
    stage_blocks: tuple[int, int] = (3, 4)
    widths: tuple[int, int] = (64, 128)
    # --- fc head (SiamFC+), SiamDW OTB-2015 values
    out_scale: float = 0.1
    total_stride: int = 8
    response_up: int = 16
    scale_num: int = 3
    scale_step: float = 1.1897
    scale_lr: float = 0.2226
    scale_penalty: float = 0.9370
    score_bias: float = 0.0
    score_temperature: float = 1.0
    # --- rpn head (SiamRPN+), SiamDW OTB-2015 values; None = the head's tuned default
    window_influence: float | None = None  # type: ignore[assignment]
    penalty_k: float = 0.841
    lr: float = 0.714

    def __post_init__(self) -> None:
        if self.head not in _WINDOW_INFLUENCE:
            raise ValueError(f"siamdw: unknown head '{self.head}' (fc|rpn)")
        if self.window_influence is None:
            self.window_influence = _WINDOW_INFLUENCE[self.head]

    @property
    def upscale_size(self) -> int:
        """Side of the upsampled FC response map (272 by default)."""
        return self.score_size * self.response_up


class SiamDWFCNet(nn.Module):
    """CIResNet-22 + SiamFC head; ``search`` returns ``{"score": (B, 1, 17, 17)}``."""

    head_kind = "fc"

    def __init__(self, config: SiamDWConfig) -> None:
        super().__init__()
        self.backbone = CIResNet22(tuple(config.stage_blocks), tuple(config.widths))
        self.head = FCHead(config.out_scale)

    def template(self, z: torch.Tensor) -> torch.Tensor:
        return self.backbone(z)

    def search(self, features: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"score": self.head(features, self.backbone(x))}

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.search(self.template(z), x)


class SiamDWRPNNet(RPNNet):
    """CIResNet-22 + up-channel RPN; ``search`` returns ``{"cls": (B, 2K, S, S), "loc": (B, 4K, S, S)}``."""

    def __init__(self, config: SiamDWConfig) -> None:
        backbone = CIResNet22(tuple(config.stage_blocks), tuple(config.widths))
        super().__init__(backbone, UpChannelRPN(config.anchor_num, backbone.out_channels, config.hidden))


@register_tracker("siamdw", SiamDWConfig,
                  description="SiamDW: CIResNet-22 (cropping-inside residuals) + SiamFC or SiamRPN head")
def build_siamdw(config: SiamDWConfig, device: torch.device) -> SiameseTracker:
    """SiamFC+ (``head="fc"``) or SiamRPN+ (``head="rpn"``) with an untrained network."""
    if config.head == "fc":
        return SiamFCTracker(SiamDWFCNet(config), config, device)  # type: ignore[arg-type]
    return SiamRPNTracker(SiamDWRPNNet(config), config, device)  # type: ignore[arg-type]
