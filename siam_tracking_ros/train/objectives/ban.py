"""Anchor-free box-adaptive heads (SiamBAN, NanoTrack): one point per score cell.

Positives are points inside the ellipse with semi-axes ``(w, h) * pos_radius`` around the target
centre, negatives outside the ellipse with semi-axes ``(w, h) * neg_radius``, at most 16
positives of 64 samples; the box target at each point is its ``(l, t, r, b)`` distances to the
target's sides in search-patch pixels. Loss: balanced cross-entropy + IoU loss at positives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from siam_tracking_ros.train.losses import balanced_cross_entropy, balanced_logistic, iou_loss
from siam_tracking_ros.train.objectives.base import Objective, Targets, register_objective
from siam_tracking_ros.train.objectives.sampling import keep_at_most, labels_from


def ellipse_distance(px: np.ndarray, py: np.ndarray, box: np.ndarray, radius: float) -> np.ndarray:
    """``((x - cx) / (w r))^2 + ((y - cy) / (h r))^2`` for every point; < 1 means inside."""
    cx, cy = box[0] + box[2] / 2.0, box[1] + box[3] / 2.0
    return ((px - cx) / (box[2] * radius)) ** 2 + ((py - cy) / (box[3] * radius)) ** 2


@register_objective("ban")
class PointObjective(Objective):
    """Point labels and loss. Network outputs: ``cls (B, 2, S, S)`` (background, foreground) or
    ``(B, 1, S, S)`` logits, and ``loc (B, 4, S, S)`` as ``(l, t, r, b)`` in search pixels — the
    form the tracker decodes (``loc_transform: exp`` if the network outputs log-distances)."""

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"pos_radius": 0.25, "neg_radius": 0.5, "pos_num": 16, "total_num": 64,
                "neg_pair_num": 16, "cls_weight": 1.0, "loc_weight": 1.0, "iou_mode": "log",
                "loc_transform": "none"}

    def assign(self, box: np.ndarray, negative: bool, rng: np.random.Generator,
               mask: np.ndarray | None = None) -> Targets:
        size = self.geometry.score_size
        pos = self.geometry.positions()
        px, py = np.meshgrid(pos, pos)
        delta = np.zeros((4, size, size), dtype=np.float32)
        inner = ellipse_distance(px, py, box, self.options["pos_radius"]) < 1.0
        if negative:
            labels = np.full((size, size), -1, dtype=np.int8)
            labels[keep_at_most(inner, self.options["neg_pair_num"], rng)] = 0
            return {"cls_label": labels, "loc_target": delta}
        outer = ellipse_distance(px, py, box, self.options["neg_radius"]) > 1.0
        labels = labels_from(inner, outer, self.options["pos_num"], self.options["total_num"], rng)
        delta[0] = px - box[0]
        delta[1] = py - box[1]
        delta[2] = box[0] + box[2] - px
        delta[3] = box[1] + box[3] - py
        return {"cls_label": labels, "loc_target": delta}

    def loss(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        labels = targets["cls_label"]
        cls = outputs["cls"]
        if cls.shape[1] == 1:
            cls_loss = balanced_logistic(cls[:, 0], labels)
        else:
            cls_loss = balanced_cross_entropy(cls.permute(0, 2, 3, 1).reshape(-1, 2), labels.reshape(-1))
        loc = outputs["loc"].float()
        if self.options["loc_transform"] == "exp":
            loc = torch.exp(loc)
        positives = labels == 1
        pred = loc.permute(0, 2, 3, 1)[positives]
        target = targets["loc_target"].permute(0, 2, 3, 1)[positives]
        loc_loss = iou_loss(pred, target, self.options["iou_mode"])
        total = self.options["cls_weight"] * cls_loss + self.options["loc_weight"] * loc_loss
        return total, {"cls": cls_loss.detach(), "loc": loc_loss.detach()}
