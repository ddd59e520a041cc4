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
any network whose ``search`` returns ``{"cls", "loc"}`` (:func:`rpn_spec`: backbone + one RPN head).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

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
from siam_tracking_ros.core.geometry import cosine_window, frame_mean
from siam_tracking_ros.core.presence import platt_probability
from siam_tracking_ros.core.result import TrackResult
from siam_tracking_ros.models.assembly import (
    NetworkSpec,
    PartSpec,
    SiameseNet,
    mobilenetv2_parts,
)
from siam_tracking_ros.models.backbones.alexnet import sequential_to_stages
from siam_tracking_ros.trackers.config_fields import (
    AnchorFields,
    BackboneStrideFields,
    RPNDecisionFields,
    SearchFields,
)
from siam_tracking_ros.trackers.decision import DecisionLoop, Proposals, still_lost
from siam_tracking_ros.trackers.registry import refuse_other_keys, register_tracker
from siam_tracking_ros.weights.io import add_missing_bn_counters

#: window influence while pysot's long-term mode has lost the target (``SiamRPNLTTracker``)
LOST_WINDOW_INFLUENCE = 0.001


@dataclass
class SiamRPNConfig(SearchFields, AnchorFields, RPNDecisionFields, BackboneStrideFields):
    """Architecture and tracking hyper-parameters (names as pysot's config); crop, anchor and
    decision fields come from :mod:`~.config_fields`."""

    STRIDE_FIELDS: ClassVar[tuple[str, ...]] = ("anchor_stride",)

    #: a registered single-output backbone part: ``alexnet`` (with ``width_mult``), ``cir_resnet22``
    #: or ``mobilenetv2`` (ImageNet MobileNetV2 ``features[:14]`` + a 1x1 adjust neck to ``hidden``
    #: channels; sets ``anchor_stride`` 16)
    backbone: str = "alexnet"
    #: ``upchannel`` (SiamRPN paper / DaSiamRPN) or ``depthwise`` (pysot siamrpn_alex_dwxcorr)
    head: str = "upchannel"
    #: AlexNet width multiplier (1.0: 96-256-384-384-256; 2.0: DaSiamRPN's BIG)
    width_mult: float = 1.0
    #: channels of the correlation kernels (DaSiamRPN ``feature_out``; depthwise hidden width)
    hidden: int = 256


    def backbone_spec(self) -> PartSpec:
        """The backbone part of :attr:`backbone` (AlexNet takes :attr:`width_mult`)."""
        if self.backbone == "mobilenetv2":
            return mobilenetv2_parts(self.hidden)[0]
        return PartSpec(self.backbone, {"width_mult": self.width_mult} if self.backbone == "alexnet" else {})

    def neck_spec(self) -> PartSpec | None:
        """The adjust neck of the ``mobilenetv2`` backbone (none for the others)."""
        return mobilenetv2_parts(self.hidden)[1] if self.backbone == "mobilenetv2" else None


#: the RPN heads and the keyword that sets their hidden (kernel) width
RPN_HEADS = {"upchannel": "hidden", "depthwise": "out_channels"}


def rpn_spec(backbone: PartSpec, head: str, anchor_num: int, hidden: int,
             template_features: bool = True, neck: PartSpec | None = None) -> NetworkSpec:
    """``backbone`` (+ ``neck``) + the RPN head ``head`` (``upchannel|depthwise``) as attribute
    ``rpn_head``; ``template`` returns ``(z_f, kernels)`` unless ``template_features`` is false."""
    if head not in RPN_HEADS:
        raise ValueError(f"unknown RPN head '{head}' ({'|'.join(RPN_HEADS)})")
    return NetworkSpec(backbone, PartSpec(head, {"anchor_num": anchor_num, RPN_HEADS[head]: hidden}),
                       neck=neck, head_kind="rpn", outputs=("cls", "loc"), head_name="rpn_head",
                       template_features=template_features)


class SiamRPNNet(SiameseNet):
    """The backbone ``config.backbone`` + the RPN head ``config.head``; ``search`` returns
    ``{"cls": (B, 2K, S, S), "loc": (B, 4K, S, S)}`` (plus ``"x_f"`` backbone features when asked)."""

    head_kind = "rpn"

    def __init__(self, config: SiamRPNConfig) -> None:
        super().__init__(rpn_spec(config.backbone_spec(), config.head, config.anchor_num, config.hidden,
                                  neck=config.neck_spec()))


class RPNGeometry(NamedTuple):
    """Score-map side, anchors ``(K*S*S, 4)`` (device) and tiled cosine window of one search size."""

    score_size: int
    anchors: torch.Tensor
    window: np.ndarray


class SiamRPNTracker(DecisionLoop):
    """Anchor-based tracking as in pysot's ``SiamRPNTracker`` (see module docstring).

    The per-frame loop is :class:`~.decision.DecisionLoop`'s; this class decodes anchors. Works
    with any network whose ``search`` returns ``{"cls", "loc"}`` and any config with the anchor,
    crop and penalty fields of :class:`SiamRPNConfig`. pysot's long-term mode
    (``SiamRPNLTTracker``) is on when ``long_term`` is set and the config has
    ``lost_instance_size``, ``confidence_low`` and ``confidence_high``: below ``confidence_low``
    the state stays put and the target counts as lost; while lost a ``lost_instance_size`` region
    is searched with window influence :data:`LOST_WINDOW_INFLUENCE` until a score exceeds
    ``confidence_high``.
    """

    def __init__(self, model: nn.Module, config: Any, device: torch.device) -> None:
        super().__init__(model, config, device)
        self._geometry: dict[int, RPNGeometry] = {}
        self.long_term = bool(getattr(config, "long_term", False))
        self._lost = False
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

    def proposal_geometry(self, instance_size: int) -> tuple[int, np.ndarray]:
        geometry = self.geometry(instance_size)
        return geometry.score_size, geometry.window

    def _init(self, frame: np.ndarray, box: tuple[float, ...]) -> None:
        image = self.upload(frame)
        self.avg_color = frame_mean(image).clone()
        self.start(image, box)
        self._lost = False
        self.instance_size = self._initial_instance_size(frame.shape)
        self.geometry(self.instance_size)

    def _initial_instance_size(self, frame_shape: tuple[int, ...]) -> int:
        return self.config.instance_size

    def _searching_globally(self) -> bool:
        """True while pysot's long-term mode has lost the target."""
        return self.long_term and self._lost

    def search_size(self) -> int:
        return self.config.lost_instance_size if self._searching_globally() else self.instance_size

    def window_influence(self) -> float:
        return LOST_WINDOW_INFLUENCE if self._searching_globally() else self.config.window_influence

    def decode(self, out: Mapping[str, torch.Tensor], instance_size: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-anchor ``(score, boxes cxcywh in the search crop, valid)`` of the network output.

        ``dw, dh`` are clamped to ``±MAX_LOG_SCALE``; NaN/inf become 0 (boxes keep a minimum size).
        """
        anchors = self.geometry(instance_size).anchors
        score = torch.nan_to_num(foreground_probability(out["cls"].float())[0], nan=0.0)
        boxes = decode_deltas(flatten_loc(out["loc"].float())[0], anchors, MAX_LOG_SCALE)
        boxes = torch.nan_to_num(boxes, nan=0.0, posinf=0.0, neginf=0.0)
        boxes[:, 2:] = torch.maximum(boxes[:, 2:], anchors[:, 2:] / math.exp(MAX_LOG_SCALE))
        valid = np.ones(score.shape[0], dtype=bool)
        return score.double().cpu().numpy(), boxes.double().cpu().numpy(), valid

    def proposals(self, out: Mapping[str, torch.Tensor], scale_z: float,
                  instance_size: int | None = None) -> Proposals:
        """Decode, penalise and window every anchor (``instance_size``: default the next one)."""
        return super().proposals(out, scale_z, self.search_size() if instance_size is None else instance_size)

    def accept(self, score: float) -> bool:
        return not self.long_term or score >= self.config.confidence_low

    def after_update(self, props: Proposals, best: int, moved: bool, out: Mapping[str, torch.Tensor]
                     ) -> None:
        if self.long_term:
            self._update_lost(float(props.score[best]))

    def _update_lost(self, score: float) -> None:
        cfg = self.config
        self._lost = still_lost(self._lost, score, cfg.confidence_low, cfg.confidence_high,
                                found_at_high=False)

    def _track(self, frame: np.ndarray) -> TrackResult:
        decision, _ = self.decide(frame)
        score = platt_probability(decision.score, self.config.score_calibration)
        return TrackResult(decision.box, score,
                           extra={"raw_score": decision.score, "pscore": decision.pscore,
                                  "instance_size": decision.region.instance_size, "lost": self._lost})


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
    refuse_other_keys(state, ("backbone.", "rpn_head."), "unexpected keys for a siamrpn checkpoint")
    return add_missing_bn_counters(out)


@register_tracker("siamrpn", SiamRPNConfig,
                  description="SiamRPN: AlexNet + RPN head (up-channel or depthwise), anchors",
                  importer=import_official_siamrpn)
def build_siamrpn(config: SiamRPNConfig, device: torch.device) -> SiamRPNTracker:
    """Build a :class:`SiamRPNTracker` with an untrained :class:`SiamRPNNet`."""
    return SiamRPNTracker(SiamRPNNet(config), config, device)
