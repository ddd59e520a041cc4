"""C-RPN (cascaded RPN stages): per-stage anchor labels, loss summed over the stages.

Stage 1 is labelled against the regular anchors, exactly as SiamRPN (done in the data loader by
:meth:`AnchorObjective.assign`). Stage ``k > 1`` is labelled against the boxes regressed by stage
``k - 1`` (``decode(anchors_{k-1}, deltas_{k-1})``, detached), and only among the anchors that
every earlier stage kept, i.e. whose background probability was ``<= theta`` (paper: 0.95); the
others are ignored (label -1). Those labels depend on the network's own outputs, so they are
assigned in :meth:`CascadeAnchorObjective.loss`, with the same IoU thresholds and sampling as
the ``rpn`` objective. Network outputs: ``cls_stages`` / ``loc_stages``, lists of
``(B, 2K, S, S)`` / ``(B, 4K, S, S)`` in the SiamRPN channel layout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from siam_tracking_ros.models.heads.cascade_rpn import filter_negative_anchors, refine_anchors
from siam_tracking_ros.train.objectives.base import HeadGeometry, Targets, register_objective
from siam_tracking_ros.train.objectives.rpn import AnchorObjective, anchor_iou, encode_deltas
from siam_tracking_ros.train.objectives.sampling import keep_at_most, labels_from

#: smallest refined anchor side (px) used for label assignment, so that IoU and deltas stay finite
MIN_ANCHOR_SIDE = 1.0


def centres_inside(anchors: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Whether each anchor centre (``anchors (4, ...)`` cxcywh) lies inside ``box`` (xywh)."""
    cx, cy = anchors[0], anchors[1]
    return (cx >= box[0]) & (cx <= box[0] + box[2]) & (cy >= box[1]) & (cy <= box[1] + box[3])


def to_grid(anchors: torch.Tensor, anchor_num: int, score_size: int) -> np.ndarray:
    """Anchor-major ``(K*S*S, 4)`` cxcywh boxes -> ``(4, K, S, S)`` float64 (the objective layout),
    sizes clamped to :data:`MIN_ANCHOR_SIDE` and non-finite values replaced."""
    grid = torch.nan_to_num(anchors.detach().double(), nan=0.0, posinf=1e6, neginf=-1e6)
    grid = grid.cpu().numpy().T.reshape(4, anchor_num, score_size, score_size).copy()
    grid[2:] = np.maximum(grid[2:], MIN_ANCHOR_SIDE)
    return grid


@register_objective("cascade_rpn")
class CascadeAnchorObjective(AnchorObjective):
    """SiamRPN labels and loss for every cascade stage (see module docstring).

    Options beyond ``rpn``'s: ``theta`` (easy-negative threshold between stages), ``stage_weights``
    (loss weight per stage, default 1 each) and ``seed`` (sampling of later-stage labels).
    """

    def __init__(self, geometry: HeadGeometry, **options: Any) -> None:
        super().__init__(geometry, **options)
        self.rng = np.random.default_rng(self.options["seed"])
        self._flat_anchors: torch.Tensor | None = None

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {**super().defaults(), "theta": 0.95, "stage_weights": None, "seed": 0}

    def assign_stage(self, anchors: np.ndarray, keep: np.ndarray, box: np.ndarray, negative: bool,
                     rng: np.random.Generator) -> Targets:
        """Targets of one stage: ``anchors (4, K, S, S)`` cxcywh, only where ``keep`` is True.

        With every anchor kept and the regular anchors this is the ``rpn`` objective's assignment.
        """
        shape = anchors.shape[1:]
        delta = np.zeros((4, *shape), dtype=np.float32)
        weight = np.zeros(shape, dtype=np.float32)
        labels = np.full(shape, -1, dtype=np.int8)
        if negative:
            inside = centres_inside(anchors, box) & keep
            labels[keep_at_most(inside, self.options["neg_pair_num"], rng)] = 0
            return {"cls_label": labels, "loc_target": delta, "loc_weight": weight}
        iou = anchor_iou(anchors, box)
        labels = labels_from((iou > self.options["pos_iou"]) & keep, (iou < self.options["neg_iou"]) & keep,
                             self.options["pos_num"], self.options["total_num"], rng)
        positives = labels == 1
        if positives.any():
            delta = encode_deltas(anchors, box)
            weight[positives] = 1.0 / positives.sum()
        return {"cls_label": labels, "loc_target": delta, "loc_weight": weight}

    def regular_anchors(self, device: torch.device) -> torch.Tensor:
        """Stage-1 anchors ``(K*S*S, 4)`` cxcywh, anchor-major (as ``core.anchors``)."""
        if self._flat_anchors is None or self._flat_anchors.device != device:
            flat = np.ascontiguousarray(self.anchors.reshape(4, -1).T)
            self._flat_anchors = torch.as_tensor(flat, dtype=torch.float32, device=device)
        return self._flat_anchors

    def image_stages(self, cls_stages: Sequence[torch.Tensor], loc_stages: Sequence[torch.Tensor]
                     ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(anchors (K*S*S, 4), keep (K*S*S,))`` of each stage after the first, for one image
        (``(1, 2K, S, S)`` / ``(1, 4K, S, S)`` outputs per stage; gradients do not flow through)."""
        anchors = self.regular_anchors(cls_stages[0].device)
        keep = torch.ones(anchors.shape[0], dtype=torch.bool, device=anchors.device)
        stages = []
        for cls, loc in zip(cls_stages[:-1], loc_stages[:-1], strict=True):
            keep = filter_negative_anchors(keep, cls.detach().float(), self.options["theta"])
            anchors = refine_anchors(anchors, loc.detach().float())
            stages.append((anchors, keep))
        return stages

    def later_stage_targets(self, cls_stages: Sequence[torch.Tensor], loc_stages: Sequence[torch.Tensor],
                            boxes: torch.Tensor, negatives: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Batched targets of stages ``2 .. L`` (``boxes (B, 4)`` xywh, ``negatives (B,)``)."""
        anchor_num = self.anchors.shape[1]
        size = self.geometry.score_size
        per_stage: list[list[Targets]] = [[] for _ in range(len(cls_stages) - 1)]
        for b in range(boxes.shape[0]):
            stages = self.image_stages([c[b:b + 1] for c in cls_stages], [v[b:b + 1] for v in loc_stages])
            box = boxes[b].detach().double().cpu().numpy()
            for index, (anchors, keep) in enumerate(stages):
                keep_grid = keep.cpu().numpy().reshape(anchor_num, size, size)
                per_stage[index].append(self.assign_stage(to_grid(anchors, anchor_num, size), keep_grid, box,
                                                          bool(negatives[b]), self.rng))
        device = cls_stages[0].device
        return [{key: torch.from_numpy(np.stack([t[key] for t in items])).to(device) for key in items[0]}
                for items in per_stage]

    def loss(self, outputs: Mapping[str, Any], targets: Mapping[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cls_stages, loc_stages = outputs["cls_stages"], outputs["loc_stages"]
        weights = self.options["stage_weights"] or [1.0] * len(cls_stages)
        if len(weights) != len(cls_stages):
            raise ValueError(f"cascade_rpn: {len(weights)} stage_weights for {len(cls_stages)} stages")
        stage_targets = [targets, *self.later_stage_targets(cls_stages, loc_stages, targets["box"],
                                                              targets["negative"])]
        total = cls_stages[0].new_zeros((), dtype=torch.float32)
        parts: dict[str, torch.Tensor] = {}
        for index, (cls, loc, stage) in enumerate(zip(cls_stages, loc_stages, stage_targets, strict=True)):
            loss, stage_parts = super().loss({"cls": cls, "loc": loc}, stage)
            total = total + weights[index] * loss
            for name, value in stage_parts.items():
                parts[f"{name}{index + 1}"] = value
        parts["cls"] = sum(v for k, v in parts.items() if k.startswith("cls"))
        parts["loc"] = sum(v for k, v in parts.items() if k.startswith("loc"))
        return total, parts
