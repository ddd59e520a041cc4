"""SiamDW (Zhang & Peng, CVPR 2019): SiamFC+ / SiamRPN+ on the CIResNet-22 backbone.

The backbone (:mod:`~siam_tracking_ros.models.backbones.cir_resnet`) crops the padding-affected
border inside every residual unit, keeps total stride 8 and a receptive field of 93 px (0.73 of
the 127 exemplar), and gives 5x5 template / 21x21 search features for 127 / 255 crops.
``head="fc"``: SiamFC cross-correlation (x 0.1 as SiamDW's ``Corr_Up``, a learnable 1x1 adjust
here) tracked exactly as :class:`~siam_tracking_ros.trackers.siamfc.SiamFCTracker`;
``head="upchannel"`` (or ``depthwise``): a SiamRPN head (up-channel: 512 -> 256 kernels, 5
anchors) tracked as :class:`~siam_tracking_ros.trackers.siamrpn.SiamRPNTracker` (``rpn`` is the
older name of ``upchannel``). As in every variant, ``head`` names the registered head part
(:mod:`~siam_tracking_ros.models.assembly`). Defaults: SiamDW's OTB-2015 hyper-parameters. Our
RPN classifier is the 2K-softmax of the shared head (SiamDW's own has K sigmoid outputs), so
official SiamRPN+ checkpoints do not load as is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from siam_tracking_ros.models.assembly import (
    MOBILENETV2_CHANNELS,
    NetworkSpec,
    PartSpec,
    SiameseNet,
)
from siam_tracking_ros.trackers.base import SiameseTracker
from siam_tracking_ros.trackers.config_fields import FCSearchFields, PresetFields
from siam_tracking_ros.trackers.registry import register_tracker
from siam_tracking_ros.trackers.siamfc import SiamFCTracker
from siam_tracking_ros.trackers.siamrpn import SiamRPNConfig, SiamRPNTracker, rpn_spec


@dataclass
class SiamDWConfig(PresetFields, SiamRPNConfig, FCSearchFields):
    """CIResNet-22 + ``head`` (``fc``, ``upchannel`` or ``depthwise``): SiamRPN's fields plus
    SiamFC's search fields.

    ``window_influence`` left at ``None`` takes the head's tuned value (preset ``siamdw/<head>``).
    """

    STRIDE_FIELDS: ClassVar[tuple[str, ...]] = ("anchor_stride", "total_stride")
    PRESETS: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "fc": {"window_influence": 0.2897},
        "upchannel": {"window_influence": 0.39},
        "depthwise": {"window_influence": 0.39},
    }
    #: older head names and the registered head part they mean
    HEAD_ALIASES: ClassVar[Mapping[str, str]] = {"rpn": "upchannel"}

    backbone: str = "cir_resnet22"
    head: str = "fc"
    stage_blocks: tuple[int, int] = (3, 4)
    widths: tuple[int, int] = (64, 128)
    # --- fc head (SiamFC+), SiamDW OTB-2015 values
    out_scale: float = 0.1
    scale_step: float = 1.1897
    scale_lr: float = 0.2226
    scale_penalty: float = 0.9370
    # --- rpn head (SiamRPN+), SiamDW OTB-2015 values
    window_influence: float | None = None  # type: ignore[assignment]
    penalty_k: float = 0.841
    lr: float = 0.714

    #: with ``backbone: mobilenetv2``: CIR units (and their bottleneck width) on the frozen
    #: pretrained maps, SiamDW's cropping-inside residuals as the trainable neck
    cir_units: int = 1
    cir_planes: int = 32


    def neck_spec(self) -> PartSpec | None:
        """CIR units over the MobileNetV2 maps (no neck on CIResNet-22)."""
        if self.backbone != "mobilenetv2":
            return None
        return PartSpec("cir", {"in_channels": MOBILENETV2_CHANNELS, "planes": self.cir_planes,
                                "units": self.cir_units})

    def backbone_spec(self) -> PartSpec:
        """CIResNet-22 with :attr:`stage_blocks` and :attr:`widths` (other backbones as SiamRPN's)."""
        if self.backbone != "cir_resnet22":
            return super().backbone_spec()
        kwargs = {"stage_blocks": tuple(self.stage_blocks), "widths": tuple(self.widths)}
        return PartSpec("cir_resnet22", kwargs)

    def __post_init__(self) -> None:
        if self.preset:  # ``siamdw/<head>``: the preset is the head's
            self.head = self.preset
        self.head = self.HEAD_ALIASES.get(self.head, self.head)
        self.preset = ""
        super().__post_init__()

    @classmethod
    def selecting(cls, preset: str) -> dict[str, Any]:
        """``siamdw/<head>`` selects the head (its preset follows)."""
        return {"head": preset}

    def default_preset(self) -> str:
        """The preset of the chosen head."""
        if self.head not in self.PRESETS:
            raise ValueError(f"siamdw: unknown head '{self.head}' ({'|'.join(self.PRESETS)})")
        return self.head


class SiamDWFCNet(SiameseNet):
    """CIResNet-22 + the ``fc`` head; ``search`` returns ``{"score": (B, 1, 17, 17)}``."""

    head_kind = "fc"

    def __init__(self, config: SiamDWConfig) -> None:
        super().__init__(NetworkSpec(config.backbone_spec(), PartSpec("fc", {"out_scale": config.out_scale}),
                                     neck=config.neck_spec()))


class SiamDWRPNNet(SiameseNet):
    """CIResNet-22 + an RPN head (``config.head``); ``search`` returns
    ``{"cls": (B, 2K, S, S), "loc": (B, 4K, S, S)}``."""

    head_kind = "rpn"

    def __init__(self, config: SiamDWConfig) -> None:
        super().__init__(rpn_spec(config.backbone_spec(), config.head, config.anchor_num, config.hidden,
                                  neck=config.neck_spec()))


@register_tracker("siamdw", SiamDWConfig,
                  description="SiamDW: CIResNet-22 (cropping-inside residuals) + SiamFC or SiamRPN head")
def build_siamdw(config: SiamDWConfig, device: torch.device) -> SiameseTracker:
    """SiamFC+ (``head="fc"``) or SiamRPN+ (``head="upchannel"|"depthwise"``) with an untrained network."""
    if config.head == "fc":
        return SiamFCTracker(SiamDWFCNet(config), config, device)  # type: ignore[arg-type]
    return SiamRPNTracker(SiamDWRPNNet(config), config, device)  # type: ignore[arg-type]
