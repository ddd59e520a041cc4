"""SiamMask (pysot ``siammask_r50_l3``; the original ``SiamMask_DAVIS.pth`` / ``SiamMask_VOT.pth``).

Network: dilated ResNet-50 up to layer3 -> adjust layer (1024 -> 256, template cropped to 7x7)
-> depthwise RPN (``cls``, ``loc``) and a depthwise-correlation mask head (a 63x63 mask per
position); the refinement module turns the chosen position's correlation feature plus the
stem/layer1/layer2 maps of the search crop into a 127x127 mask.

Tracking is SiamRPN's (box from the RPN); the refined mask is pasted back into the frame and
its minimum-area rectangle gives the rotated box.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from siam_tracking_ros.core.capabilities import MaskOutput
from siam_tracking_ros.core.geometry import mask_to_polygon
from siam_tracking_ros.core.result import TrackResult
from siam_tracking_ros.models.assembly import NetworkSpec, PartSpec, SiameseNet
from siam_tracking_ros.models.heads.mask import COARSE_MASK_SIZE, REFINED_MASK_SIZE, MaskCorr, Refine
from siam_tracking_ros.trackers.config_fields import AnchorFields, RPNDecisionFields, SearchFields
from siam_tracking_ros.trackers.decision import Decision
from siam_tracking_ros.trackers.registry import refuse_other_keys, register_tracker
from siam_tracking_ros.trackers.siamrpn import SiamRPNTracker
from siam_tracking_ros.weights.io import add_missing_bn_counters


@dataclass
class SiamMaskConfig(SearchFields, AnchorFields, RPNDecisionFields):
    """Architecture and tracking hyper-parameters (pysot ``siammask_r50_l3`` values)."""

    #: the refinement reads ResNet-50's stem/layer1/layer2 maps: ``resnet50`` only
    backbone: str = "resnet50"
    base_size: int = 8
    penalty_k: float = 0.10
    window_influence: float = 0.41
    lr: float = 0.32
    mask_threshold: float = 0.15
    refine: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backbone != "resnet50":
            raise ValueError(f"siammask: only backbone='resnet50' is supported, got '{self.backbone}'")


def siammask_spec(anchor_num: int = 5) -> NetworkSpec:
    """ResNet-50 up to layer3 + adjust (1024 -> 256) + depthwise RPN (the mask parts are SiamMask's)."""
    rpn = PartSpec("depthwise", {"anchor_num": anchor_num, "in_channels": 256, "out_channels": 256})
    return NetworkSpec(PartSpec("resnet50", {"used_layers": (0, 1, 2, 3)}), rpn,
                       neck=PartSpec("adjust", {"in_channels": [1024], "out_channels": [256]}),
                       head_kind="mask", outputs=("cls", "loc"), head_name="rpn_head")


class SiamMaskNet(SiameseNet):
    """SiamMask with refinement; float BGR 0..255 in.

    ``search`` returns ``cls``, ``loc``, ``mask`` (coarse, ``(B, 3969, S, S)``) and the inputs of
    :meth:`refine`: ``mask_corr`` and the search crop's ``skip0..skip2`` backbone maps. The neck
    sees the last backbone level only; the others feed the refinement.
    """

    head_kind = "mask"

    def __init__(self, anchor_num: int = 5) -> None:
        super().__init__(siammask_spec(anchor_num))
        self.mask_head = MaskCorr(256, 256)
        self.refine_head = Refine()

    def template(self, z: torch.Tensor) -> tuple[Any, torch.Tensor]:
        zf = self.neck(self.backbone(z)[-1], crop=True)
        return self.rpn_head.template(zf), self.mask_head.template(zf)

    def search(self, features: tuple[Any, torch.Tensor], x: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = self.backbone(x)
        xf = self.neck(maps[-1])
        cls, loc = self.rpn_head.search(features[0], xf)
        mask, corr = self.mask_head.search_with_feature(features[1], xf)
        return {"cls": cls, "loc": loc, "mask": mask, "mask_corr": corr,
                "skip0": maps[0], "skip1": maps[1], "skip2": maps[2]}

    def refine(self, outputs: Mapping[str, torch.Tensor], pos: tuple[int, int]) -> torch.Tensor:
        """Refined mask logits ``(B, 1, 127, 127)`` for response cell ``pos = (row, col)``."""
        skips = (outputs["skip0"], outputs["skip1"], outputs["skip2"])
        return self.refine_head(skips, outputs["mask_corr"], pos)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.search(self.template(z), x)


def paste_mask(mask: np.ndarray, sub_box: tuple[float, float, float, float],
               frame_shape: tuple[int, ...]) -> np.ndarray:
    """Warp a square crop mask covering ``sub_box (x, y, side, side)`` into a frame-sized array."""
    height, width = frame_shape[:2]
    out = mask.shape[0]
    s = out / sub_box[2]
    back = (-sub_box[0] * s, -sub_box[1] * s, width * s, height * s)
    a, b = (width - 1) / back[2], (height - 1) / back[3]
    mapping = np.array([[a, 0.0, -a * back[0]], [0.0, b, -b * back[1]]], dtype=np.float64)
    return cv2.warpAffine(mask, mapping, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def box_polygon(box: tuple[float, float, float, float]) -> np.ndarray:
    """Corners of an axis-aligned ``(x, y, w, h)`` box, clockwise from the top-left, ``(4, 2)``."""
    x, y, w, h = box
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float32)


class SiamMaskTracker(SiamRPNTracker, MaskOutput):
    """pysot ``SiamMaskTracker``: RPN box + refined mask and its rotated rectangle.

    Not a :class:`~siam_tracking_ros.core.capabilities.GlobalSearch` tracker: it has no long-term mode.
    """

    produces_mask = True

    def enable_global_search(self, flag: bool = True) -> None:
        """Refused (``ValueError``): for callers that still probe instead of checking the type."""
        if flag:
            raise ValueError(f"{self.name or type(self).__name__} has no long-term mode")

    def _mask_sub_box(self, decision: Decision, row: int, col: int) -> tuple[float, float, float, float]:
        """Frame region ``(x, y, side, side)`` that the refined mask of cell ``(row, col)`` covers."""
        cfg = self.config
        region = decision.region
        s = region.side / region.instance_size
        step = cfg.anchor_stride * s
        return (region.origin[0] + (col - cfg.base_size / 2) * step,
                region.origin[1] + (row - cfg.base_size / 2) * step,
                s * cfg.exemplar_size, s * cfg.exemplar_size)

    def _track(self, frame: np.ndarray) -> TrackResult:
        decision, outputs = self.decide(frame)
        size = decision.score_size
        _, row, col = np.unravel_index(decision.index, (self.config.anchor_num, size, size))
        if self.config.refine:
            logits = self.model.refine(outputs, (int(row), int(col)))[0, 0]
        else:
            coarse = outputs["mask"][0, :, int(row), int(col)]
            side = COARSE_MASK_SIZE
            logits = torch.nn.functional.interpolate(
                coarse.reshape(1, 1, side, side).float(), size=(REFINED_MASK_SIZE, REFINED_MASK_SIZE),
                mode="bilinear", align_corners=False)[0, 0]
        prob = torch.sigmoid(logits.float()).cpu().numpy()
        in_frame = paste_mask(prob, self._mask_sub_box(decision, int(row), int(col)), frame.shape)
        threshold = self.config.mask_threshold
        polygon = mask_to_polygon(in_frame, threshold)
        if polygon is None:
            polygon = box_polygon(decision.box)
        binary = np.where(in_frame > threshold, 255, 0).astype(np.uint8)
        return TrackResult(box=decision.box, score=decision.score, polygon=polygon, mask=binary,
                           extra={"cell": (int(row), int(col))})


# ---------------------------------------------------------------------------------------------
# official checkpoints

#: original SiamMask (``Custom``) prefixes -> ours (= pysot's)
SIAMMASK_PREFIXES = (
    ("features.features.", "backbone."),
    ("features.downsample.", "neck.downsample."),
    ("rpn_model.", "rpn_head."),
    ("mask_model.mask.", "mask_head."),
    ("refine_model.", "refine_head."),
)
_PYSOT_PREFIXES = ("backbone.", "neck.", "rpn_head.", "mask_head.", "refine_head.")


def _rename(key: str) -> str:
    for old, new in SIAMMASK_PREFIXES:
        if key.startswith(old):
            return new + key[len(old):]
    raise KeyError(f"'{key}' is not part of a SiamMask checkpoint (features/rpn_model/mask_model/"
                   f"refine_model)")


def import_official_siammask(state: Mapping[str, torch.Tensor], config: SiamMaskConfig | None = None
                             ) -> dict[str, torch.Tensor]:
    """Map a pysot ``siammask_r50_l3`` ``model.pth`` or an original ``SiamMask_{DAVIS,VOT}.pth``.

    pysot names are ours; the original layout is renamed with :data:`SIAMMASK_PREFIXES`. BN
    counters missing from old checkpoints are filled with zeros.
    """
    del config  # one architecture
    if "features.features.conv1.weight" in state:
        mapped = {_rename(k): v for k, v in state.items()}
    elif any(k.startswith("backbone.") for k in state):
        if any(k.startswith("rpn_head.rpn") for k in state) or not any(
                k.startswith("mask_head.") for k in state):
            raise ValueError("it is a SiamRPN++ checkpoint (no mask head), not a 'siammask' one: "
                             "load it with build_tracker('siamrpnpp', ...)")
        refuse_other_keys(state, _PYSOT_PREFIXES, "keys outside backbone/neck/rpn_head/mask_head/refine_head")
        mapped = dict(state)
    else:
        raise ValueError("neither pysot (backbone.*) nor original SiamMask (features.features.*) keys")
    if not any(k.startswith("refine_head.") for k in mapped):
        raise ValueError("the checkpoint has no refinement module (a SiamMask-base model?); "
                         "only SiamMask with refinement (siammask_sharp) is supported")
    return add_missing_bn_counters(mapped)


@register_tracker("siammask", SiamMaskConfig,
                  description="SiamMask: ResNet-50 + depthwise RPN + refined mask (pysot / SiamMask)",
                  importer=import_official_siammask)
def build_siammask(config: SiamMaskConfig, device: torch.device) -> SiamMaskTracker:
    """Build the SiamMask tracker for ``config`` on ``device``."""
    return SiamMaskTracker(SiamMaskNet(config.anchor_num), config, device)
