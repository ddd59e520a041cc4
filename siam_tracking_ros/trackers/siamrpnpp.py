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
from typing import Any, ClassVar

import torch

from siam_tracking_ros.core.capabilities import GlobalSearch
from siam_tracking_ros.models.assembly import MOBILENETV2_STRIDE, NetworkSpec, PartSpec, SiameseNet
from siam_tracking_ros.models.backbones.alexnet import SEQUENTIAL_INDICES
from siam_tracking_ros.trackers.config_fields import (
    AnchorFields,
    PresetFields,
    RPNDecisionFields,
    SearchFields,
)
from siam_tracking_ros.trackers.registry import refuse_other_keys, register_tracker
from siam_tracking_ros.trackers.siamrpn import SiamRPNTracker, rpn_spec
from siam_tracking_ros.weights.io import add_missing_bn_counters

BACKBONES = ("resnet50", "mobilenetv2", "alexnet")

@dataclass
class SiamRPNppConfig(PresetFields, SearchFields, AnchorFields, RPNDecisionFields):
    """Architecture and tracking hyper-parameters (pysot names, lower case).

    Fields left at ``None`` take the values of the preset named ``preset``, by default the one
    named after ``backbone`` (pysot's per-model values, :attr:`PRESETS`).
    """

    PRESETS: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "resnet50": {"backbone": "resnet50", "rpn_weighted": True, "instance_size": 255, "base_size": 8,
                     "penalty_k": 0.05, "window_influence": 0.42, "lr": 0.38},
        "mobilenetv2": {"backbone": "mobilenetv2", "rpn_weighted": False, "instance_size": 255,
                        "base_size": 8, "penalty_k": 0.04, "window_influence": 0.4, "lr": 0.5},
        "alexnet": {"backbone": "alexnet", "rpn_weighted": False, "instance_size": 287, "base_size": 0,
                    "penalty_k": 0.16, "window_influence": 0.40, "lr": 0.30},
        #: ours: ImageNet MobileNetV2 (torchvision layout), levels features[:14] and dilated [:17]
        "mobilenetv2_imagenet": {"backbone": "mobilenetv2_imagenet", "rpn_weighted": True,
                                 "instance_size": 255, "base_size": 0, "penalty_k": 0.16,
                                 "window_influence": 0.40, "lr": 0.30},
    }

    backbone: str | None = None  # type: ignore[assignment]
    adjust_channels: int = 256
    rpn_weighted: bool | None = None
    instance_size: int | None = None  # type: ignore[assignment]
    base_size: int | None = None  # type: ignore[assignment]
    penalty_k: float | None = None  # type: ignore[assignment]
    window_influence: float | None = None  # type: ignore[assignment]
    lr: float | None = None  # type: ignore[assignment]
    long_term: bool = False
    lost_instance_size: int = 831
    confidence_low: float = 0.85
    confidence_high: float = 0.998

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backbone == "mobilenetv2_imagenet":
            self.anchor_stride = MOBILENETV2_STRIDE

    def default_preset(self) -> str:
        """The preset of the chosen backbone (``resnet50`` when none is chosen)."""
        if self.backbone is not None and self.backbone not in self.PRESETS:
            raise ValueError(f"unknown backbone '{self.backbone}'; valid: {', '.join(BACKBONES)}")
        return self.backbone or "resnet50"


#: pysot's per-model values (the presets of :class:`SiamRPNppConfig`)
PRESETS = SiamRPNppConfig.PRESETS


#: backbone specs (pysot's) of the three SiamRPN++ models
BACKBONE_SPECS: dict[str, PartSpec] = {
    "resnet50": PartSpec("resnet50", {"used_layers": (2, 3, 4)}),
    "mobilenetv2": PartSpec("mobilenetv2", {"width_mult": 1.4, "used_layers": (3, 5, 7)}),
    "alexnet": PartSpec("alexnet", {"width_mult": 1.0}),
    "mobilenetv2_imagenet": PartSpec("mobilenetv2_imagenet_levels", {}),
}
#: levels of each multi-level backbone
LEVELS = {"resnet50": 3, "mobilenetv2": 3, "mobilenetv2_imagenet": 2}


def siamrpnpp_spec(backbone: str = "resnet50", adjust_channels: int = 256, weighted: bool = True,
                   anchor_num: int = 5) -> NetworkSpec:
    """pysot's SiamRPN++: multi-level backbone + adjust neck + ``multi_rpn``; AlexNet: one
    depthwise RPN, no neck."""
    if backbone not in BACKBONE_SPECS:
        raise ValueError(f"unknown backbone '{backbone}'; valid: {', '.join(BACKBONES)}")
    if backbone == "alexnet":
        return rpn_spec(BACKBONE_SPECS[backbone], "depthwise", anchor_num, 256, template_features=False)
    neck_options: dict[str, Any] = {"out_channels": [adjust_channels] * LEVELS[backbone]}
    if backbone == "mobilenetv2_imagenet":
        neck_options["center_size"] = 8  # padded maps: the whole 8x8 exemplar map is the kernel
    neck = PartSpec("adjust", neck_options)
    head = PartSpec("multi_rpn", {"anchor_num": anchor_num, "weighted": weighted})
    return NetworkSpec(BACKBONE_SPECS[backbone], head, neck=neck, head_kind="rpn", outputs=("cls", "loc"),
                       head_name="rpn_head")


class SiamRPNppNet(SiameseNet):
    """Backbone + adjust layers + depthwise RPN heads; float BGR 0..255 in, ``{"cls", "loc"}`` out.

    ``template`` returns the heads' adapted template kernels, so per frame only the search
    branch runs.
    """

    head_kind = "rpn"

    def __init__(self, backbone: str = "resnet50", adjust_channels: int = 256,
                 weighted: bool = True, anchor_num: int = 5) -> None:
        super().__init__(siamrpnpp_spec(backbone, adjust_channels, weighted, anchor_num))


class SiamRPNppTracker(SiamRPNTracker, GlobalSearch):
    """:class:`SiamRPNTracker` that offers pysot's long-term mode as :meth:`enable_global_search`."""

    def enable_global_search(self, flag: bool = True) -> None:
        """Switch pysot's long-term mode: search a larger region while the target seems lost."""
        self.long_term = bool(flag)
        if not flag:
            self._lost = False

    @property
    def global_search_configured(self) -> bool:
        """``long_term`` of the config: pysot's long-term mode runs all the time."""
        return bool(self.config.long_term)


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
    refuse_other_keys(state, ("backbone.", "neck.", "rpn_head."), "keys outside backbone/neck/rpn_head")
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
