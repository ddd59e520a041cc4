"""SiamRPN-style anchors: IoU > 0.6 positive, < 0.3 negative, at most 16 positives of 64;
two-class cross-entropy plus smooth-L1 on the anchor deltas."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from siam_tracking_ros.core.anchors import anchor_shapes
from siam_tracking_ros.train.losses import balanced_cross_entropy, weighted_smooth_l1
from siam_tracking_ros.train.objectives.base import (
    HeadGeometry,
    Objective,
    Targets,
    register_objective,
)
from siam_tracking_ros.train.objectives.sampling import keep_at_most, labels_from


def make_anchors(geometry: HeadGeometry) -> np.ndarray:
    """Anchors ``(4, k, S, S)`` as ``cx, cy, w, h`` in search-patch pixels (same sizes, order and
    cell centres as :func:`siam_tracking_ros.core.anchors.generate_anchors` with ``center`` at
    the patch centre)."""
    shapes = anchor_shapes(geometry.stride, geometry.ratios, geometry.scales).astype(np.float64)
    pos = geometry.positions()
    k, size = len(shapes), geometry.score_size
    anchors = np.empty((4, k, size, size), dtype=np.float64)
    anchors[0] = pos[None, None, :]
    anchors[1] = pos[None, :, None]
    anchors[2] = shapes[:, 0, None, None]
    anchors[3] = shapes[:, 1, None, None]
    return anchors


def anchor_iou(anchors: np.ndarray, box: np.ndarray) -> np.ndarray:
    """IoU of every anchor ``(4, ...)`` cxcywh with one ``(x, y, w, h)`` box."""
    ax1, ay1 = anchors[0] - anchors[2] / 2, anchors[1] - anchors[3] / 2
    ax2, ay2 = anchors[0] + anchors[2] / 2, anchors[1] + anchors[3] / 2
    iw = np.clip(np.minimum(ax2, box[0] + box[2]) - np.maximum(ax1, box[0]), 0, None)
    ih = np.clip(np.minimum(ay2, box[1] + box[3]) - np.maximum(ay1, box[1]), 0, None)
    inter = iw * ih
    union = anchors[2] * anchors[3] + box[2] * box[3] - inter
    return inter / np.maximum(union, 1e-9)


def encode_deltas(anchors: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Regression targets ``(dx, dy, dw, dh)`` of ``box`` (xywh) against ``anchors`` (cxcywh)."""
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    return np.stack([(cx - anchors[0]) / anchors[2], (cy - anchors[1]) / anchors[3],
                     np.log(box[2] / anchors[2]), np.log(box[3] / anchors[3])]).astype(np.float32)


@register_objective("rpn")
class AnchorObjective(Objective):
    """Anchor labels and the SiamRPN loss. Network outputs: ``cls (B, 2k, S, S)`` laid out as
    ``(2, k)`` channels (background block then foreground block) and ``loc (B, 4k, S, S)`` as
    ``(4, k)``."""

    def __init__(self, geometry: HeadGeometry, **options: Any) -> None:
        super().__init__(geometry, **options)
        self.anchors = make_anchors(geometry)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"pos_iou": 0.6, "neg_iou": 0.3, "pos_num": 16, "total_num": 64, "neg_pair_num": 16,
                "cls_weight": 1.0, "loc_weight": 1.2}

    def assign(self, box: np.ndarray, negative: bool, rng: np.random.Generator,
               mask: np.ndarray | None = None) -> Targets:
        shape = self.anchors.shape[1:]
        delta = np.zeros((4, *shape), dtype=np.float32)
        weight = np.zeros(shape, dtype=np.float32)
        if negative:
            inside = self._centres_inside(box)
            labels = np.full(shape, -1, dtype=np.int8)
            labels[keep_at_most(inside, self.options["neg_pair_num"], rng)] = 0
            return {"cls_label": labels, "loc_target": delta, "loc_weight": weight}
        iou = anchor_iou(self.anchors, box)
        labels = labels_from(iou > self.options["pos_iou"], iou < self.options["neg_iou"],
                             self.options["pos_num"], self.options["total_num"], rng)
        positives = labels == 1
        if positives.any():
            delta = encode_deltas(self.anchors, box)
            weight[positives] = 1.0 / positives.sum()
        return {"cls_label": labels, "loc_target": delta, "loc_weight": weight}

    def _centres_inside(self, box: np.ndarray) -> np.ndarray:
        cx, cy = self.anchors[0], self.anchors[1]
        return ((cx >= box[0]) & (cx <= box[0] + box[2]) & (cy >= box[1]) & (cy <= box[1] + box[3]))

    def loss(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        labels = targets["cls_label"]
        batch, k = labels.shape[:2]
        cls = outputs["cls"].reshape(batch, 2, k, *labels.shape[2:]).permute(0, 2, 3, 4, 1)
        cls_loss = balanced_cross_entropy(cls.reshape(-1, 2), labels.reshape(-1))
        loc = outputs["loc"].reshape(batch, 4, k, *labels.shape[2:])
        loc_loss = weighted_smooth_l1(loc, targets["loc_target"], targets["loc_weight"])
        total = self.options["cls_weight"] * cls_loss + self.options["loc_weight"] * loc_loss
        return total, {"cls": cls_loss.detach(), "loc": loc_loss.detach()}
