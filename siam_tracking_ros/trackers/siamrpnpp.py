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

import numpy as np
import torch
from torch import nn

from siam_tracking_ros.core.anchors import (
    decode_deltas,
    flatten_loc,
    foreground_probability,
    generate_anchors,
    score_map_size,
)
from siam_tracking_ros.core.geometry import (
    clip_box_xywh,
    context_size,
    cosine_window,
    crop_subwindow,
    frame_mean,
    scale_ratio_penalty,
)
from siam_tracking_ros.core.result import TrackResult
from siam_tracking_ros.models.backbones.alexnet import SEQUENTIAL_INDICES, AlexNet, pysot_alexnet
from siam_tracking_ros.models.backbones.mobilenetv2 import MobileNetV2
from siam_tracking_ros.models.backbones.resnet import DilatedResNet50
from siam_tracking_ros.models.heads.rpn import DepthwiseRPN, MultiRPN
from siam_tracking_ros.models.necks.adjust import AdjustAllLayer
from siam_tracking_ros.trackers.base import SiameseTracker
from siam_tracking_ros.trackers.registry import register_tracker
from siam_tracking_ros.trackers.siamfc import box_in_frame

BACKBONES = ("resnet50", "mobilenetv2", "alexnet")
#: box deltas are clamped to this magnitude before decoding (far beyond what trained heads emit;
#: keeps untrained or diverging networks from producing inf/NaN boxes)
MAX_DELTA = 8.0

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


def _cast(features: Any, dtype: torch.dtype) -> Any:
    """``features`` (tensor or nested tuples/lists of tensors) converted to ``dtype``."""
    if isinstance(features, torch.Tensor):
        return features.to(dtype)
    return type(features)(_cast(f, dtype) for f in features)


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


@dataclass
class Decision:
    """The chosen proposal of one frame, in source pixels (``box``: its part inside the frame)."""

    box: tuple[float, float, float, float]
    score: float
    index: int
    score_size: int
    crop_origin: tuple[float, float]
    crop_side: float
    instance_size: int


class RPNTracker(SiameseTracker):
    """pysot ``SiamRPNTracker`` logic (+ the long-term variant) over any ``{"cls", "loc"}`` network."""

    def __init__(self, model: nn.Module, config: Any, device: torch.device) -> None:
        super().__init__(model, config, device)
        self._grids: dict[int, tuple[int, torch.Tensor, np.ndarray]] = {}
        self.long_term = bool(getattr(config, "long_term", False))
        self._lost = False
        self._grid(config.instance_size)

    def enable_global_search(self, flag: bool = True) -> None:
        """Switch pysot's long-term mode: search a larger region while the target seems lost."""
        if flag and not hasattr(self.config, "lost_instance_size"):
            raise ValueError(f"{self.name or type(self).__name__} has no long-term mode")
        self.long_term = bool(flag)
        if not flag:
            self._lost = False

    def _grid(self, instance_size: int) -> tuple[int, torch.Tensor, np.ndarray]:
        """Score size, anchors (device) and flat cosine window for one search size (cached)."""
        if instance_size not in self._grids:
            cfg = self.config
            size = score_map_size(instance_size, cfg.exemplar_size, cfg.anchor_stride, cfg.base_size)
            anchors = generate_anchors(size, cfg.anchor_stride, cfg.anchor_ratios, cfg.anchor_scales)
            window = np.tile(cosine_window(size).reshape(-1), cfg.anchor_num).astype(np.float64)
            self._grids[instance_size] = (size, torch.from_numpy(anchors).to(self.device), window)
        return self._grids[instance_size]

    def _init(self, frame: np.ndarray, box: tuple[float, ...]) -> None:
        cfg = self.config
        x, y, w, h = box
        self.center = np.array([x + w / 2.0, y + h / 2.0])
        self.size = np.array([w, h], dtype=np.float64)
        image = self.upload(frame)
        self.avg_color = frame_mean(image).clone()
        side = round(context_size(w, h, cfg.context_amount))
        z = crop_subwindow(image, self.center, side, cfg.exemplar_size, self.avg_color)
        self._features = self.model.template(z.to(self.dtype))
        self._features_dtype = self.dtype
        self._lost = False

    def _search(self, frame: np.ndarray) -> tuple[dict[str, torch.Tensor], float, int, float]:
        """Crop around the current position and run the search branch.

        Returns ``(outputs, scale_z, instance_size, crop_side)``.
        """
        cfg = self.config
        if self._features_dtype != self.dtype:  # half() was called after init
            self._features = _cast(self._features, self.dtype)
            self._features_dtype = self.dtype
        s_z = context_size(self.size[0], self.size[1], cfg.context_amount)
        instance = cfg.lost_instance_size if (self.long_term and self._lost) else cfg.instance_size
        crop_side = round(s_z * instance / cfg.exemplar_size)
        image = self.upload(frame)
        x = crop_subwindow(image, self.center, crop_side, instance, self.avg_color)
        outputs = self.model.search(self._features, x.to(self.dtype))
        return outputs, cfg.exemplar_size / s_z, instance, float(crop_side)

    def score_proposals(self, outputs: dict[str, torch.Tensor], scale_z: float, instance_size: int
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """pysot's proposal scoring for one search output.

        Returns ``(score, boxes, penalty, pscore)`` per anchor: foreground probability, decoded
        ``(cx, cy, w, h)`` in search-crop pixels relative to its centre, scale/ratio penalty
        against the current size and the window-blended score that picks the winner.
        """
        cfg = self.config
        _, anchors, window = self._grid(instance_size)
        score = foreground_probability(outputs["cls"].float())[0].cpu().numpy().astype(np.float64)
        score = np.nan_to_num(score, nan=0.0)
        deltas = flatten_loc(outputs["loc"].float())[0].nan_to_num(0.0).clamp(-MAX_DELTA, MAX_DELTA)
        boxes = decode_deltas(deltas, anchors).cpu().numpy().astype(np.float64)
        penalty = scale_ratio_penalty(boxes[:, 2], boxes[:, 3], self.size[0] * scale_z,
                                      self.size[1] * scale_z, cfg.penalty_k)
        influence = 0.001 if (self.long_term and self._lost) else cfg.window_influence
        pscore = penalty * score * (1.0 - influence) + window * influence
        return score, boxes, penalty, pscore

    def _decide(self, frame: np.ndarray) -> tuple[Decision, dict[str, torch.Tensor]]:
        """One tracking step on ``frame``: updates the state and returns the chosen proposal."""
        cfg = self.config
        outputs, scale_z, instance, crop_side = self._search(frame)
        origin = (self.center[0] - crop_side / 2.0, self.center[1] - crop_side / 2.0)
        score, boxes, penalty, pscore = self.score_proposals(outputs, scale_z, instance)
        best = int(np.argmax(pscore))
        best_score = float(score[best])
        if not self.long_term or best_score >= cfg.confidence_low:
            self._move(boxes[best] / scale_z, penalty[best] * best_score * cfg.lr)
        cx, cy, w, h = clip_box_xywh(self.center[0], self.center[1], self.size[0], self.size[1],
                                     frame.shape, cfg.min_size)
        self.center, self.size = np.array([cx, cy]), np.array([w, h])
        if self.long_term:
            self._update_lost(best_score)
        decision = Decision(box_in_frame(cx, cy, w, h, frame.shape), best_score, best,
                            self._grid(instance)[0], origin, crop_side, instance)
        return decision, outputs

    def _move(self, offset_box: np.ndarray, lr: float) -> None:
        """Shift the centre by the proposal's offset and blend the size with rate ``lr``."""
        self.center = self.center + offset_box[:2]
        self.size = self.size * (1.0 - lr) + offset_box[2:] * lr

    def _update_lost(self, best_score: float) -> None:
        if best_score < self.config.confidence_low:
            self._lost = True
        elif best_score > self.config.confidence_high:
            self._lost = False

    def _track(self, frame: np.ndarray) -> TrackResult:
        decision, _ = self._decide(frame)
        return TrackResult(box=decision.box, score=decision.score,
                           extra={"instance_size": decision.instance_size, "lost": self._lost})


# ---------------------------------------------------------------------------------------------
# official checkpoints

_MASK_PREFIXES = ("mask_head.", "refine_head.", "mask_model.", "refine_model.", "features.features.")
_UPCHANNEL_KEYS = ("rpn_head.template_cls_conv.weight", "rpn.template_cls_conv.weight",
                   "conv_r1.weight")


def complete_bn_counters(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add the ``num_batches_tracked`` entries that checkpoints from PyTorch < 0.4.1 lack."""
    out = dict(state)
    for key in list(state):
        if key.endswith(".running_mean"):
            counter = key[: -len("running_mean")] + "num_batches_tracked"
            out.setdefault(counter, torch.tensor(0, dtype=torch.long))
    return out


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
    return complete_bn_counters(state)


def build_network(config: SiamRPNppConfig) -> SiamRPNppNet:
    """The untrained network described by ``config``."""
    return SiamRPNppNet(config.backbone, config.adjust_channels, bool(config.rpn_weighted),
                        config.anchor_num)


@register_tracker("siamrpnpp", SiamRPNppConfig,
                  description="SiamRPN++: ResNet-50/MobileNetV2/AlexNet + depthwise RPN (pysot)",
                  importer=import_pysot_siamrpnpp,
                  detect_options=detect_siamrpnpp_options)
def build_siamrpnpp(config: SiamRPNppConfig, device: torch.device) -> RPNTracker:
    """Build the SiamRPN++ tracker for ``config`` on ``device``."""
    return RPNTracker(build_network(config), config, device)


__all__ = [
    "PRESETS",
    "Decision",
    "RPNTracker",
    "SiamRPNppConfig",
    "SiamRPNppNet",
    "build_network",
    "complete_bn_counters",
    "detect_backbone",
    "import_pysot_siamrpnpp",
]
