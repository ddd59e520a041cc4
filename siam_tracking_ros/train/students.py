"""What ``siam-train features`` trains on top of the frozen pretrained maps, per variant.

A *student* owns a variant's network with the ImageNet backbone frozen. It gives the frozen
maps of crops (what the cache stores), runs the trainable part from cached maps, computes the
loss of a cached batch, and builds the variant's tracker around (a copy of) its weights:

- :class:`NanoTrackStudent`: NanoTrack's BAN head (point labels, IoU loss, teacher distillation),
- :class:`SiameseStudent`: any assembled :class:`~siam_tracking_ros.models.assembly.SiameseNet`
  variant with the ``mobilenetv2`` backbone (SiamFC family, RPN family): neck, template transform
  and head trained with the variant's own objective, targets from the cached search boxes.

Both read one cache layout, so one cache serves every variant with the same backbone and crops.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from siam_tracking_ros.train.losses import balanced_cross_entropy, iou_loss
from siam_tracking_ros.train.objectives import geometry_from, make_objective
from siam_tracking_ros.train.objectives.ban import PointObjective
from siam_tracking_ros.train.objectives.base import HeadGeometry

Batch = dict[str, torch.Tensor]

#: point geometry of the cached labels (NanoTrack's 16x16 map over a 255 search crop)
CACHE_GEOMETRY = HeadGeometry(exemplar_size=127, instance_size=255, score_size=16, stride=16)
#: MobileNetV2 layers of the single-level map every variant starts from (``features[:14]``, 96 ch)
CACHED_LAYERS = 14


def pair_loss(out: dict[str, torch.Tensor], batch: Batch, distill_weight: float,
              box_weight: float = 0.0, box_threshold: float = 0.5
              ) -> tuple[torch.Tensor, dict[str, float]]:
    """NanoTrack: balanced CE + IoU at positives + BCE of the foreground probability to the
    teacher's (+ ``box_weight`` x IoU loss to the teacher's boxes where it is confident, if cached)."""
    labels = batch["labels"].long()
    cls = out["cls"].float()
    cls_loss = balanced_cross_entropy(cls.permute(0, 2, 3, 1).reshape(-1, 2), labels.reshape(-1))
    positives = labels == 1
    pred = out["loc"].float().permute(0, 2, 3, 1)[positives]
    target = batch["loc_target"].float().permute(0, 2, 3, 1)[positives]
    loc_loss = iou_loss(pred, target, "log")
    total = cls_loss + loc_loss
    parts = {"cls": float(cls_loss.detach()), "loc": float(loc_loss.detach())}
    teacher = batch["teacher"].float()
    use = (~batch["negative"]) & (teacher[:, 0, 0] >= 0)
    if distill_weight > 0 and use.any():
        fg_logit = cls[:, 1] - cls[:, 0]
        distill = nn.functional.binary_cross_entropy_with_logits(fg_logit[use], teacher[use])
        total = total + distill_weight * distill
        parts["distill"] = float(distill.detach())
    if box_weight > 0 and "teacher_loc" in batch:
        confident = (teacher >= box_threshold) & (~batch["negative"])[:, None, None]
        pred = out["loc"].float().permute(0, 2, 3, 1)[confident]
        target = batch["teacher_loc"].float().permute(0, 2, 3, 1)[confident]
        box_distill = iou_loss(pred, target, "log")
        total = total + box_weight * box_distill
        parts["box_distill"] = float(box_distill.detach())
    return total, parts


def search_boxes(batch: Batch) -> np.ndarray:
    """``(B, 4)`` target boxes ``(x, y, w, h)`` in the search crops: the cached ``search_box``, or
    (caches made before it existed) read off the cached point targets (:data:`CACHE_GEOMETRY`),
    whose ``(l, t, r, b)`` at point 0 give the box (zeros for negative pairs: no target)."""
    if "search_box" in batch:
        return batch["search_box"].numpy().astype(np.float64)
    origin = float(CACHE_GEOMETRY.positions()[0])
    ltrb = batch["loc_target"][:, :, 0, 0].double().numpy()
    return np.stack([origin - ltrb[:, 0], origin - ltrb[:, 1], ltrb[:, 0] + ltrb[:, 2],
                     ltrb[:, 1] + ltrb[:, 3]], axis=1)


class NanoTrackStudent(nn.Module):
    """The trainable part of a NanoTrack-on-MobileNetV2 network over cached frozen maps."""

    variant = "nanotrack"

    def __init__(self, net: nn.Module, trainable_from: int, distill_weight: float = 1.0,
                 box_weight: float = 0.0, box_threshold: float = 0.5) -> None:
        super().__init__()
        self.net = net
        self.trainable_from = trainable_from
        self.upper = net.backbone.features[trainable_from:]
        self.weights = (distill_weight, box_weight, box_threshold)
        self.objective = PointObjective(CACHE_GEOMETRY)

    def frozen_features(self, crops: torch.Tensor) -> torch.Tensor:
        """``features[:trainable_from]`` of BGR 0..255 crops, BN in eval mode (ImageNet's
        statistics must never be updated by the probe or cache batches)."""
        self.net.backbone.eval()
        return self.net.backbone.first_layers(crops, self.trainable_from)

    def forward(self, zf: torch.Tensor, xf: torch.Tensor) -> dict[str, torch.Tensor]:
        head = self.net.ban_head
        cls, loc = head.correlate(head.prepare(self.upper(zf)), self.upper(xf))
        return {"cls": cls, "loc": loc}

    def loss(self, batch: Batch, rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """:func:`pair_loss` of one cached batch (the point labels are in the cache)."""
        return pair_loss(self(batch["zf"].float(), batch["xf"].float()), batch, *self.weights)

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """``(head parameters, unfrozen backbone parameters)``."""
        return list(self.net.ban_head.parameters()), list(self.upper.parameters())

    def train_mode(self) -> None:
        """Head in training mode; backbone BN statistics stay frozen (ImageNet's)."""
        self.net.eval()
        self.net.ban_head.train()

    def tracker(self, state: dict[str, torch.Tensor] | None, config: Any) -> Any:
        """NanoTrack tracking on a copy of the network (holding ``state`` when given)."""
        from siam_tracking_ros.trackers.nanotrack import NanoTracker

        net = copy.deepcopy(self.net)
        if state is not None:
            net.load_state_dict(state)
        tracker = NanoTracker(net, config, torch.device("cpu"))
        tracker.name = "nanotrack"
        return tracker


class SiameseStudent(nn.Module):
    """An assembled variant on the ImageNet MobileNetV2: ``features[:trainable_from]`` frozen (the
    cache), ``features[trainable_from:14]`` and everything after the backbone trained with the
    variant's objective (``net.head_kind``)."""

    def __init__(self, variant: str, net: nn.Module, config: Any, objective_options: dict[str, Any],
                 trainable_from: int = CACHED_LAYERS) -> None:
        super().__init__()
        if not 1 <= trainable_from <= CACHED_LAYERS:
            raise ValueError(f"trainable_from must be within 1..{CACHED_LAYERS}, got {trainable_from}")
        self.variant = variant
        self.net = net
        self.config = config
        self.trainable_from = trainable_from
        #: ``features[trainable_from:14]``: the backbone stages that train (lr x backbone_lr_mult)
        self.upper = net.backbone.features[trainable_from:CACHED_LAYERS]
        self.geometry = geometry_from(config, net)
        self.objective = make_objective(net.head_kind, self.geometry, **objective_options)

    def frozen_features(self, crops: torch.Tensor) -> torch.Tensor:
        """What the cache stores of BGR 0..255 crops: the backbone's ``features[:trainable_from]``
        map, BN in eval mode."""
        self.net.backbone.eval()
        return self.net.backbone.first_layers(crops, self.trainable_from)

    def maps(self, cached: torch.Tensor) -> Any:
        """What the network's ``*_from_maps`` take, from cached maps: the trainable stages up to
        ``features[:14]``, then a multi-level backbone runs its frozen upper stages
        (``levels_from``), a network whose branches share the map arranges it
        (``maps_from_backbone``, SA-Siam)."""
        backbone = self.net.backbone
        cached = self.upper(cached)
        maps = backbone.levels_from(cached) if hasattr(backbone, "levels_from") else cached
        return self.net.maps_from_backbone(maps) if hasattr(self.net, "maps_from_backbone") else maps

    def forward(self, zf: torch.Tensor, xf: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.net.search_from_maps(self.net.template_from_maps(self.maps(zf)), self.maps(xf))

    def targets(self, batch: Batch, rng: np.random.Generator) -> Batch:
        """The objective's targets for the cached pairs (search boxes and negative flags)."""
        boxes = search_boxes(batch)
        negative = batch["negative"].numpy()
        assigned = [self.objective.assign(box, bool(neg), rng) for box, neg in zip(boxes, negative,
                                                                                   strict=True)]
        targets = {key: torch.from_numpy(np.stack([a[key] for a in assigned])) for key in assigned[0]}
        # what objectives that label against the network's own outputs need (C-RPN's later stages)
        targets["box"], targets["negative"] = torch.from_numpy(boxes).float(), batch["negative"]
        return targets

    def loss(self, batch: Batch, rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        out = self(batch["zf"].float(), batch["xf"].float())
        total, parts = self.objective.loss(out, self.targets(batch, rng))
        return total, {key: float(value) for key, value in parts.items()}

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """``(everything after the backbone, unfrozen backbone stages)``."""
        backbone = {id(p) for p in self.net.backbone.parameters()}
        return [p for p in self.net.parameters() if id(p) not in backbone], list(self.upper.parameters())

    def train_mode(self) -> None:
        self.net.train()
        self.net.backbone.eval()

    def tracker(self, state: dict[str, torch.Tensor] | None, config: Any) -> Any:
        """The variant's tracker on a network of its own holding ``state`` (the current weights
        when None)."""
        from siam_tracking_ros.trackers.registry import get_spec

        tracker = get_spec(self.variant).builder(config, torch.device("cpu"))
        tracker.model.load_state_dict(self.net.state_dict() if state is None else state)
        tracker.model.eval()
        tracker.name = self.variant
        return tracker

