"""SiamRPN++ (pysot ``siamrpn_r50_l234_dwxcorr`` and its MobileNetV2 / AlexNet siblings).

Network: backbone -> adjust layers (256 ch, template cropped to 7x7) -> one depthwise-correlation
RPN per level, fused by (softmax-)weighted averaging (pysot ``MultiRPN``). ``backbone: alexnet``
is ``siamrpn_alex_dwxcorr`` (no adjust layer, one ``DepthwiseRPN``).

Tracking follows pysot's ``SiamRPNTracker``: crop ``instance_size`` around the last position,
score every anchor (softmax foreground probability), penalise scale/ratio change and distance
from the centre (cosine window), take the best proposal and smooth the size with ``lr``. The
optional long-term mode (pysot ``SiamRPNLTTracker``) searches a ``lost_instance_size`` region
with a negligible window while the score stays below ``confidence_low``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from siam_tracking_ros.models.backbones.alexnet import SEQUENTIAL_INDICES, AlexNet, pysot_alexnet
from siam_tracking_ros.models.backbones.mobilenetv2 import MobileNetV2
from siam_tracking_ros.models.backbones.resnet import DilatedResNet50
from siam_tracking_ros.models.heads.rpn import DepthwiseRPN, MultiRPN
from siam_tracking_ros.models.necks.adjust import AdjustAllLayer
from siam_tracking_ros.trackers.registry import register_tracker
from siam_tracking_ros.trackers.siamrpn import SiamRPNTracker
from siam_tracking_ros.weights.io import add_missing_bn_counters

BACKBONES = ("resnet50", "mobilenetv2", "alexnet")

#: pysot's per-model values for the fields a config leaves at ``None``
PRESETS: dict[str, dict[str, Any]] = {
    "resnet50": {"rpn_weighted": True, "instance_size": 255, "base_size": 8,
                 "penalty_k": 0.05, "window_influence": 0.42, "lr": 0.38},
    "mobilenetv2": {"rpn_weighted": False, "instance_size": 255, "base_size": 8,
                    "penalty_k": 0.04, "window_influence": 0.4, "lr": 0.5},
    "alexnet": {"rpn_weighted": False, "instance_size": 287, "base_size": 0,
                "penalty_k": 0.16, "window_influence": 0.40, "lr": 0.30},
}


@dataclass
class SiamRPNppConfig:
    """Architecture and tracking hyper-parameters (pysot names, lower case).

    Fields left at ``None`` take pysot's value for ``backbone`` (see :data:`PRESETS`).
    """

    backbone: str = "resnet50"
    adjust_channels: int = 256
    rpn_weighted: bool | None = None
    anchor_stride: int = 8
    anchor_ratios: tuple[float, ...] = (0.33, 0.5, 1.0, 2.0, 3.0)
    anchor_scales: tuple[float, ...] = (8.0,)
    exemplar_size: int = 127
    instance_size: int | None = None
    base_size: int | None = None
    context_amount: float = 0.5
    penalty_k: float | None = None
    window_influence: float | None = None
    lr: float | None = None
    min_size: float = 10.0
    long_term: bool = False
    lost_instance_size: int = 831
    confidence_low: float = 0.85
    confidence_high: float = 0.998

    def __post_init__(self) -> None:
        if self.backbone not in PRESETS:
            raise ValueError(f"unknown backbone '{self.backbone}'; valid: {', '.join(BACKBONES)}")
        for key, value in PRESETS[self.backbone].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        self.anchor_ratios = tuple(float(r) for r in self.anchor_ratios)
        self.anchor_scales = tuple(float(s) for s in self.anchor_scales)

    @property
    def anchor_num(self) -> int:
        """Anchors per score-map cell."""
        return len(self.anchor_ratios) * len(self.anchor_scales)


class SiamRPNppNet(nn.Module):
    """Backbone + adjust layers + depthwise RPN heads; float BGR 0..255 in, ``{"cls", "loc"}`` out.

    ``template`` returns the heads' adapted template kernels, so per frame only the search
    branch runs.
    """

    head_kind = "rpn"

    def __init__(self, backbone: str = "resnet50", adjust_channels: int = 256,
                 weighted: bool = True, anchor_num: int = 5) -> None:
        super().__init__()
        self.neck: AdjustAllLayer | None = None
        self.rpn_head: nn.Module
        if backbone == "alexnet":
            self.backbone = AlexNet(pysot_alexnet(1.0))
            self.rpn_head = DepthwiseRPN(anchor_num, self.backbone.out_channels, 256)
            return
        if backbone == "resnet50":
            self.backbone = DilatedResNet50((2, 3, 4))
        elif backbone == "mobilenetv2":
            self.backbone = MobileNetV2(1.4, (3, 5, 7))
        else:
            raise ValueError(f"unknown backbone '{backbone}'; valid: {', '.join(BACKBONES)}")
        levels = len(self.backbone.channels)
        self.neck = AdjustAllLayer(self.backbone.channels, [adjust_channels] * levels)
        self.rpn_head = MultiRPN(anchor_num, [adjust_channels] * levels, weighted)

    def features(self, image: torch.Tensor, template: bool) -> Any:
        """Backbone (+ adjust) features; templates get the centre crop."""
        feats = self.backbone(image)
        return feats if self.neck is None else self.neck(feats, crop=template)

    def template(self, z: torch.Tensor) -> Any:
        return self.rpn_head.template(self.features(z, template=True))

    def search(self, features: Any, x: torch.Tensor) -> dict[str, torch.Tensor]:
        cls, loc = self.rpn_head.search(features, self.features(x, template=False))
        return {"cls": cls, "loc": loc}

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.search(self.template(z), x)


class SiamRPNppTracker(SiamRPNTracker):
    """:class:`SiamRPNTracker` that offers pysot's long-term mode as :meth:`enable_global_search`."""

    def enable_global_search(self, flag: bool = True) -> None:
        """Switch pysot's long-term mode: search a larger region while the target seems lost."""
        if flag and not hasattr(self.config, "lost_instance_size"):
            raise ValueError(f"{self.name or type(self).__name__} has no long-term mode")
        self.long_term = bool(flag)
        if not flag:
            self._lost = False


# ---------------------------------------------------------------------------------------------
# official checkpoints

_MASK_PREFIXES = ("mask_head.", "refine_head.", "mask_model.", "refine_model.", "features.features.")
_UPCHANNEL_KEYS = ("rpn_head.template_cls_conv.weight", "rpn.template_cls_conv.weight",
                   "conv_r1.weight")


def detect_backbone(state: Mapping[str, torch.Tensor]) -> str:
    """Which SiamRPN++ backbone a pysot state dict holds; ``ValueError`` if none fits."""
    if "backbone.layer4.0.conv1.weight" in state and "backbone.conv1.weight" in state:
        return "resnet50"
    if "backbone.layer7.0.conv.0.weight" in state:
        return "mobilenetv2"
    if "backbone.features.0.weight" in state or "backbone.layer1.0.weight" in state:
        return "alexnet"
    raise ValueError("no ResNet-50 (layer2-4), MobileNetV2 or AlexNet backbone keys found")


def detect_siamrpnpp_options(state: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """``{"backbone": ...}`` of a pysot checkpoint; empty when no known backbone fits."""
    try:
        return {"backbone": detect_backbone(state)}
    except ValueError:
        return {}


def _alexnet_key(key: str) -> str:
    """pysot ``AlexNetLegacy`` (``features.i``) / ``AlexNet`` (``layerN.j``) -> our ``convN.j``."""
    parts = key.split(".")
    if parts[1] == "features":
        index = int(parts[2])
        for stage, pair in enumerate(SEQUENTIAL_INDICES, start=1):
            if index in pair:
                return ".".join(["backbone", f"conv{stage}", str(pair.index(index)), *parts[3:]])
        raise KeyError(f"'{key}' is not a conv/bn of pysot's AlexNetLegacy")
    if parts[1].startswith("layer"):
        return ".".join(["backbone", f"conv{parts[1][5:]}", *parts[2:]])
    return key


def import_pysot_siamrpnpp(state: Mapping[str, torch.Tensor], config: SiamRPNppConfig | None = None
                           ) -> dict[str, torch.Tensor]:
    """Map a pysot ``model.pth`` of ``siamrpn_{r50_l234,mobilev2_l234,alex}_dwxcorr`` to our names.

    Our names are pysot's (``backbone.*``, ``neck.downsample{2,3,4}.*``, ``rpn_head.rpn{2,3,4}.*``)
    except the AlexNet stages (``features.i`` -> ``convN.j``). Pass ``backbone=`` matching the
    checkpoint (``detect_backbone`` tells which) to ``build_tracker``.
    """
    if any(key.startswith(_MASK_PREFIXES) for key in state):
        raise ValueError("it is a SiamMask checkpoint (mask/refine keys), not a 'siamrpnpp' one: "
                         "load it with build_tracker('siammask', ...)")
    if any(key in state for key in _UPCHANNEL_KEYS):
        raise ValueError("it is an up-channel SiamRPN/DaSiamRPN checkpoint, not a depthwise "
                         "'siamrpnpp' one")
    unknown = sorted(k for k in state if not k.startswith(("backbone.", "neck.", "rpn_head.")))
    if unknown:
        raise KeyError(f"keys outside backbone/neck/rpn_head: {unknown[:5]}")
    backbone = detect_backbone(state)
    if config is not None and config.backbone != backbone:
        raise ValueError(f"the checkpoint has a {backbone} backbone but the config asks for "
                         f"{config.backbone}")
    if backbone == "alexnet":
        state = {(_alexnet_key(k) if k.startswith("backbone.") else k): v for k, v in state.items()}
    return add_missing_bn_counters(state)


def build_network(config: SiamRPNppConfig) -> SiamRPNppNet:
    """The untrained network described by ``config``."""
    return SiamRPNppNet(config.backbone, config.adjust_channels, bool(config.rpn_weighted),
                        config.anchor_num)


@register_tracker("siamrpnpp", SiamRPNppConfig,
                  description="SiamRPN++: ResNet-50/MobileNetV2/AlexNet + depthwise RPN (pysot)",
                  importer=import_pysot_siamrpnpp,
                  detect_options=detect_siamrpnpp_options)
def build_siamrpnpp(config: SiamRPNppConfig, device: torch.device) -> SiamRPNppTracker:
    """Build the SiamRPN++ tracker for ``config`` on ``device``."""
    return SiamRPNppTracker(build_network(config), config, device)


__all__ = [
    "PRESETS",
    "SiamRPNppConfig",
    "SiamRPNppNet",
    "SiamRPNppTracker",
    "build_network",
    "detect_backbone",
    "import_pysot_siamrpnpp",
]
