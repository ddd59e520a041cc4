"""SiamFC-style score maps: positives within a radius of the target centre, logistic loss."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from siam_tracking_ros.train.losses import balanced_logistic
from siam_tracking_ros.train.objectives.base import Objective, Targets, register_objective


@register_objective("fc")
class ScoreMapObjective(Objective):
    """Labels 1 where a score cell lies within ``r_pos`` search-patch pixels of the target centre,
    0 beyond ``r_neg``, ignored between; negative pairs are all 0."""

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"r_pos": 16.0, "r_neg": 16.0}

    def assign(self, box: np.ndarray, negative: bool, rng: np.random.Generator,
               mask: np.ndarray | None = None) -> Targets:
        size = self.geometry.score_size
        if negative:
            return {"score_label": np.zeros((size, size), dtype=np.int8)}
        pos = self.geometry.positions()
        cx, cy = box[0] + box[2] / 2.0, box[1] + box[3] / 2.0
        dist = np.hypot(pos[None, :] - cx, pos[:, None] - cy)
        labels = np.full((size, size), -1, dtype=np.int8)
        labels[dist > self.options["r_neg"]] = 0
        labels[dist <= self.options["r_pos"]] = 1
        return {"score_label": labels}

    def loss(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        score = outputs["score"]
        labels = targets["score_label"]
        score = score.reshape(labels.shape)
        cls = balanced_logistic(score, labels)
        return cls, {"cls": cls.detach()}
