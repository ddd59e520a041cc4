"""SiamRPN (Li et al. 2018): AlexNet features + region-proposal head over anchors.

Two heads: ``head="upchannel"`` (the paper's up-channel correlation, as in DaSiamRPN's models) and
``head="depthwise"`` (pysot's ``siamrpn_alex_dwxcorr``: ``AlexNetLegacy`` + ``DepthwiseRPN``; use
``instance_size=287`` with its weights, as pysot's config does).

Per frame (pysot ``SiamRPNTracker``): crop ``s_x = s_z * instance / exemplar`` around the target,
decode every anchor's box, multiply the foreground probability by the scale/ratio change penalty
(``penalty_k``), blend with a cosine window (``window_influence``), take the best proposal and move
towards it with rate ``lr * penalty * score``. The reported score is the softmax foreground
probability of the chosen anchor. Box deltas are decoded with ``dw, dh`` clamped to
``±MAX_LOG_SCALE`` (NaN/inf -> 0).

:class:`SiamRPNTracker` is the one RPN tracking loop of the package: ``siamrpn`` and ``siamdw``
(rpn head) use it as is, ``dasiamrpn`` (distractors, growing search), ``c_rpn`` (cascade decoding),
``siamrpnpp`` (long-term switch) and ``siammask`` (mask of the chosen cell) subclass it. It runs
any network whose ``search`` returns ``{"cls", "loc"}`` (:class:`RPNNet` is backbone + one head).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from siam_tracking_ros.core.anchors import (
    MAX_LOG_SCALE,
    decode_deltas,
    flatten_loc,
    foreground_probability,
    generate_anchors,
    score_map_size,
)
from siam_tracking_ros.core.geometry import (
    box_in_frame,
    clip_box_xywh,
    context_size,
    cosine_window,
    frame_mean,
    scale_ratio_penalty,
)
from siam_tracking_ros.core.result import TrackResult
from siam_tracking_ros.models.backbones.alexnet import AlexNet, pysot_alexnet, sequential_to_stages
from siam_tracking_ros.models.heads.rpn import DepthwiseRPN, UpChannelRPN
from siam_tracking_ros.trackers.base import SiameseTracker
from siam_tracking_ros.trackers.registry import register_tracker
from siam_tracking_ros.weights.io import add_missing_bn_counters

#: window influence while pysot's long-term mode has lost the target (``SiamRPNLTTracker``)
LOST_WINDOW_INFLUENCE = 0.001


@dataclass
class SiamRPNConfig:
    """Architecture and tracking hyper-parameters (names as pysot's config)."""

    #: ``upchannel`` (SiamRPN paper / DaSiamRPN) or ``depthwise`` (pysot siamrpn_alex_dwxcorr)
    head: str = "upchannel"
    #: AlexNet width multiplier (1.0: 96-256-384-384-256; 2.0: DaSiamRPN's BIG)
    width_mult: float = 1.0
    #: channels of the correlation kernels (DaSiamRPN ``feature_out``; depthwise hidden width)
    hidden: int = 256
    anchor_stride: int = 8
    anchor_ratios: list[float] = field(default_factory=lambda: [0.33, 0.5, 1.0, 2.0, 3.0])
    anchor_scales: list[float] = field(default_factory=lambda: [8.0])
    exemplar_size: int = 127
    instance_size: int = 255
    base_size: int = 0
    context_amount: float = 0.5
    penalty_k: float = 0.16
    window_influence: float = 0.40
    lr: float = 0.30
    min_size: float = 10.0

    @property
    def anchor_num(self) -> int:
        """Anchors per score-map position ``K``."""
        return len(self.anchor_ratios) * len(self.anchor_scales)

    @property
    def score_size(self) -> int:
        """Side of the score map for ``instance_size`` (17 for 255, 19 for 271, 21 for 287)."""
        return self.score_size_for(self.instance_size)

    def score_size_for(self, instance_size: int) -> int:
        """Side of the score map for a given search size."""
        return score_map_size(instance_size, self.exemplar_size, self.anchor_stride, self.base_size)

    def anchors_for(self, instance_size: int) -> np.ndarray:
        """Anchors ``(K*S*S, 4)`` cxcywh relative to the crop centre for a given search size."""
        return generate_anchors(self.score_size_for(instance_size), self.anchor_stride,
                                self.anchor_ratios, self.anchor_scales)


def make_rpn_head(kind: str, anchor_num: int, channels: int, hidden: int) -> nn.Module:
    """``upchannel`` (:class:`UpChannelRPN`) or ``depthwise`` (:class:`DepthwiseRPN`) RPN head."""
    if kind == "upchannel":
        return UpChannelRPN(anchor_num, channels, hidden)
    if kind == "depthwise":
        return DepthwiseRPN(anchor_num, channels, hidden)
    raise ValueError(f"unknown RPN head '{kind}' (upchannel|depthwise)")


class RPNNet(nn.Module):
    """A backbone + one RPN head. ``search`` returns ``{"cls": (B, 2K, S, S), "loc": (B, 4K, S, S)}``."""

    head_kind = "rpn"

    def __init__(self, backbone: nn.Module, rpn_head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.rpn_head = rpn_head

    def template(self, z: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``(z_f, head kernels)`` of BGR 0..255 template crops."""
        z_f = self.backbone(z)
        return z_f, self.rpn_head.template(z_f)

    def search(self, features: tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor,
               return_features: bool = False) -> dict[str, torch.Tensor]:
        """``{"cls", "loc"}`` (plus ``"x_f"`` backbone features when asked)."""
        x_f = self.backbone(x)
        cls, loc = self.rpn_head.search(features[1], x_f)
        out = {"cls": cls, "loc": loc}
        if return_features:
            out["x_f"] = x_f
        return out

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.search(self.template(z), x)


class SiamRPNNet(RPNNet):
    """AlexNet + the RPN head ``config.head`` (see :class:`RPNNet`)."""

    def __init__(self, config: SiamRPNConfig) -> None:
        backbone = AlexNet(pysot_alexnet(config.width_mult))
        super().__init__(backbone, make_rpn_head(config.head, config.anchor_num,
                                                 backbone.out_channels, config.hidden))


def cast_features(features: Any, dtype: torch.dtype) -> Any:
    """``features`` (tensor or nested tuples/lists of tensors) converted to ``dtype``."""
    if isinstance(features, torch.Tensor):
        return features.to(dtype)
    return type(features)(cast_features(f, dtype) for f in features)


class RPNGeometry(NamedTuple):
    """Score-map side, anchors ``(K*S*S, 4)`` (device) and tiled cosine window of one search size."""

    score_size: int
    anchors: torch.Tensor
    window: np.ndarray


@dataclass
class Proposals:
    """All proposals of one frame, on the CPU, anchor-major.

    ``boxes`` are cxcywh in search-crop pixels relative to the crop centre.
    """

    score: np.ndarray
    boxes: np.ndarray
    penalty: np.ndarray
    pscore: np.ndarray


@dataclass(frozen=True)
class SearchRegion:
    """Where one frame is searched: crop ``side`` (source pixels, rounded as the crop is) from
    top-left ``origin``, resized to ``instance_size``; ``scale_z`` = exemplar size / ``s_z``."""

    instance_size: int
    side: float
    origin: tuple[float, float]
    scale_z: float


@dataclass
class Decision:
    """The chosen proposal of one frame: ``box`` (source pixels, its part inside the frame), its
    scores, its anchor-major ``index`` on the ``score_size`` map and the search ``region``."""

    box: tuple[float, float, float, float]
    score: float
    pscore: float
    index: int
    score_size: int
    region: SearchRegion


class SiamRPNTracker(SiameseTracker):
    """Anchor-based tracking as in pysot's ``SiamRPNTracker`` (see module docstring).

    Works with any network whose ``search`` returns ``{"cls", "loc"}`` and any config with the
    anchor, crop and penalty fields of :class:`SiamRPNConfig`. pysot's long-term mode
    (``SiamRPNLTTracker``) is on when ``long_term`` is set and the config has
    ``lost_instance_size``, ``confidence_low`` and ``confidence_high``: below ``confidence_low``
    the state stays put and the target counts as lost; while lost a ``lost_instance_size`` region
    is searched with window influence :data:`LOST_WINDOW_INFLUENCE` until a score exceeds
    ``confidence_high``.
    """

    supports_cuda_graphs = True

    def __init__(self, model: nn.Module, config: Any, device: torch.device) -> None:
        super().__init__(model, config, device)
        self._geometry: dict[int, RPNGeometry] = {}
        self.instance_size: int = config.instance_size
        self.long_term = bool(getattr(config, "long_term", False))
        self._lost = False
        self.features: Any = None
        self._features_dtype = self.dtype
        self.geometry(config.instance_size)

    def geometry(self, instance_size: int) -> RPNGeometry:
        """Anchors and window of one search size (computed once per size)."""
        if instance_size not in self._geometry:
            cfg = self.config
            size = score_map_size(instance_size, cfg.exemplar_size, cfg.anchor_stride, cfg.base_size)
            anchors = generate_anchors(size, cfg.anchor_stride, cfg.anchor_ratios, cfg.anchor_scales)
            window = np.tile(cosine_window(size).ravel(), cfg.anchor_num).astype(np.float64)
            self._geometry[instance_size] = RPNGeometry(size, torch.from_numpy(anchors).to(self.device),
                                                        window)
        return self._geometry[instance_size]

    def _init(self, frame: np.ndarray, box: tuple[float, ...]) -> None:
        cfg = self.config
        x, y, w, h = box
        self.center = np.array([x + w / 2, y + h / 2])
        self.size = np.array([w, h], dtype=np.float64)
        image = self.upload(frame)
        self.avg_color = frame_mean(image).clone()
        s_z = context_size(w, h, cfg.context_amount)
        z = self.crop(image, self.center, s_z, cfg.exemplar_size, self.avg_color)
        self.features = self.template_pass(z.to(self.dtype))
        self._features_dtype = self.dtype
        self._lost = False
        self.instance_size = self._initial_instance_size(frame.shape)
        self.geometry(self.instance_size)

    def _initial_instance_size(self, frame_shape: tuple[int, ...]) -> int:
        return self.config.instance_size

    def _searching_globally(self) -> bool:
        """True while pysot's long-term mode has lost the target."""
        return self.long_term and self._lost

    def _search_size(self) -> int:
        """Side of the resized search crop for the next frame."""
        return self.config.lost_instance_size if self._searching_globally() else self.instance_size

    def _window_influence(self) -> float:
        """Weight of the cosine window in the proposal ranking for the next frame."""
        return LOST_WINDOW_INFLUENCE if self._searching_globally() else self.config.window_influence

    def search_region(self) -> SearchRegion:
        """The search crop of the next frame around the current state."""
        cfg = self.config
        s_z = context_size(*self.size, cfg.context_amount)
        instance = self._search_size()
        side = float(round(s_z * instance / cfg.exemplar_size))
        origin = (self.center[0] - side / 2.0, self.center[1] - side / 2.0)
        return SearchRegion(instance, side, origin, cfg.exemplar_size / s_z)

    def _search(self, frame: np.ndarray, region: SearchRegion, return_features: bool = False
                ) -> dict[str, torch.Tensor]:
        """Run the network on the search crop of ``region``."""
        if self._features_dtype != self.dtype:  # half() was called after init
            self.features = cast_features(self.features, self.dtype)
            self._features_dtype = self.dtype
        image = self.upload(frame)
        x = self.crop(image, self.center, region.side, region.instance_size, self.avg_color)
        if return_features:  # only networks that offer them (e.g. for DaSiamRPN's distractors)
            return self.search_pass(self.features, x.to(self.dtype), return_features=True)
        return self.search_pass(self.features, x.to(self.dtype))

    def decode(self, out: Mapping[str, torch.Tensor], anchors: torch.Tensor
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-anchor ``(score, boxes cxcywh in the search crop, valid)`` of the network output.

        ``dw, dh`` are clamped to ``±MAX_LOG_SCALE``; NaN/inf become 0 (boxes keep a minimum size).
        """
        score = torch.nan_to_num(foreground_probability(out["cls"].float())[0], nan=0.0)
        boxes = decode_deltas(flatten_loc(out["loc"].float())[0], anchors, MAX_LOG_SCALE)
        boxes = torch.nan_to_num(boxes, nan=0.0, posinf=0.0, neginf=0.0)
        boxes[:, 2:] = torch.maximum(boxes[:, 2:], anchors[:, 2:] / math.exp(MAX_LOG_SCALE))
        valid = np.ones(score.shape[0], dtype=bool)
        return score.double().cpu().numpy(), boxes.double().cpu().numpy(), valid

    def proposals(self, out: Mapping[str, torch.Tensor], scale_z: float,
                  instance_size: int | None = None) -> Proposals:
        """Decode, penalise and window every anchor of the network output (invalid ones: -1).

        ``instance_size`` is the search size ``out`` comes from (default: the current one).
        """
        cfg = self.config
        geometry = self.geometry(self._search_size() if instance_size is None else instance_size)
        score_np, boxes_np, valid = self.decode(out, geometry.anchors)
        target = self.size * scale_z
        penalty = scale_ratio_penalty(boxes_np[:, 2], boxes_np[:, 3], target[0], target[1], cfg.penalty_k)
        influence = self._window_influence()
        pscore = penalty * score_np * (1 - influence) + geometry.window * influence
        return Proposals(score_np, boxes_np, penalty, np.where(valid, pscore, -1.0))

    def update_state(self, props: Proposals, best: int, scale_z: float,
                     frame_shape: tuple[int, ...], move: bool = True) -> tuple[float, float, float, float]:
        """Move the target towards proposal ``best`` (unless ``move`` is false) and clip it to the
        frame; returns the new ``(cx, cy, w, h)``."""
        cfg = self.config
        if move:
            box = props.boxes[best] / scale_z
            lr = props.penalty[best] * props.score[best] * cfg.lr
            self.center = self.center + box[:2]
            self.size = self.size * (1 - lr) + box[2:] * lr
        state = clip_box_xywh(*self.center, *self.size, frame_shape, cfg.min_size)
        self.center, self.size = np.array(state[:2]), np.array(state[2:])
        return state

    def _decide(self, frame: np.ndarray) -> tuple[Decision, dict[str, torch.Tensor]]:
        """One tracking step on ``frame``: updates the state, returns the choice and the outputs."""
        cfg = self.config
        region = self.search_region()
        out = self._search(frame, region)
        props = self.proposals(out, region.scale_z, instance_size=region.instance_size)
        best = int(np.argmax(props.pscore))
        score = float(props.score[best])
        confident = not self.long_term or score >= cfg.confidence_low
        cx, cy, w, h = self.update_state(props, best, region.scale_z, frame.shape, move=confident)
        if self.long_term:
            self._update_lost(score)
        decision = Decision(box_in_frame(cx, cy, w, h, frame.shape), score, float(props.pscore[best]),
                            best, self.geometry(region.instance_size).score_size, region)
        return decision, out

    def _update_lost(self, score: float) -> None:
        if score < self.config.confidence_low:
            self._lost = True
        elif score > self.config.confidence_high:
            self._lost = False

    def _track(self, frame: np.ndarray) -> TrackResult:
        decision, _ = self._decide(frame)
        return TrackResult(decision.box, decision.score,
                           extra={"pscore": decision.pscore, "instance_size": decision.region.instance_size,
                                  "lost": self._lost})


def _refuse_other_layouts(state: Mapping[str, torch.Tensor], variant: str) -> None:
    """Raise ``KeyError`` naming the variant a checkpoint of another family belongs to."""
    keys = set(state)
    if any(k.startswith("featureExtract.") for k in keys) and variant != "dasiamrpn":
        raise KeyError(f"this is a DaSiamRPN checkpoint (featureExtract.*): load it with 'dasiamrpn', "
                       f"not '{variant}'")
    if any(k.startswith("neck.") or k.startswith("mask_head.") for k in keys):
        raise KeyError(f"this is a pysot ResNet checkpoint (neck.*/mask_head.*, siamrpnpp/siammask), "
                       f"not '{variant}'")
    if "backbone.conv1.0.weight" in keys and not any(k.startswith("rpn_head.") for k in keys):
        raise KeyError(f"this is a siamfc-pytorch checkpoint (backbone.conv1..5, no RPN head): load it "
                       f"with 'siamfc', not '{variant}'")


def import_official_siamrpn(state: Mapping[str, torch.Tensor], config: SiamRPNConfig | None
                            ) -> dict[str, torch.Tensor]:
    """Map a pysot AlexNet SiamRPN checkpoint (e.g. ``siamrpn_alex_dwxcorr/model.pth``) to ours.

    Backbone ``backbone.features.{i}`` (``AlexNetLegacy``) or ``backbone.layer{n}.{j}``
    (``AlexNet``) -> ``backbone.conv{n}.{j}``; ``rpn_head.*`` keeps its pysot names
    (``DepthwiseRPN``: ``cls|loc.conv_kernel|conv_search|head``; ``UPChannelRPN``:
    ``template_cls_conv`` ...). Pick ``head=`` to match (``depthwise`` for the model zoo file).
    """
    _refuse_other_layouts(state, "siamrpn")
    if not any(k.startswith("rpn_head.") for k in state):
        raise KeyError("not a pysot SiamRPN checkpoint: no 'rpn_head.*' keys")
    if any(k.startswith("backbone.features.") for k in state):
        out = sequential_to_stages(state, "backbone.features", "backbone")
    else:
        out = {}
        for key, value in state.items():
            if key.startswith("backbone.layer"):
                stage, _, rest = key.removeprefix("backbone.layer").partition(".")
                out[f"backbone.conv{stage}.{rest}"] = value
    if not out:
        raise KeyError("not a pysot AlexNet SiamRPN checkpoint: no 'backbone.features.*' or "
                       "'backbone.layer*' keys")
    out.update({k: v for k, v in state.items() if k.startswith("rpn_head.")})
    leftover = sorted(k for k in state if not k.startswith(("backbone.", "rpn_head.")))
    if leftover:
        raise KeyError(f"unexpected keys for a siamrpn checkpoint: {leftover[:5]}")
    return add_missing_bn_counters(out)


@register_tracker("siamrpn", SiamRPNConfig,
                  description="SiamRPN: AlexNet + RPN head (up-channel or depthwise), anchors",
                  importer=import_official_siamrpn)
def build_siamrpn(config: SiamRPNConfig, device: torch.device) -> SiamRPNTracker:
    """Build a :class:`SiamRPNTracker` with an untrained :class:`SiamRPNNet`."""
    return SiamRPNTracker(SiamRPNNet(config), config, device)
