"""SiamMask: the RPN objective plus a per-position mask loss.

At each score cell holding a positive anchor, the network's ``mask`` channels ``(M*M)`` predict
the object mask inside the exemplar-sized window centred on that cell; the target is the
search-patch ground-truth mask sampled on the same window at ``M x M``. Samples without a mask
contribute no mask loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from siam_tracking_ros.train.objectives.base import Targets, register_objective
from siam_tracking_ros.train.objectives.rpn import AnchorObjective


@register_objective("mask")
class MaskObjective(AnchorObjective):
    """Anchors as in SiamRPN; ``mask (B, M*M, S, S)`` logits with a binary logistic loss."""

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {**super().defaults(), "mask_weight": 32.0, "mask_downsample": 4}

    def assign(self, box: np.ndarray, negative: bool, rng: np.random.Generator,
               mask: np.ndarray | None = None) -> Targets:
        targets = super().assign(box, negative, rng)
        size = self.geometry.instance_size // self.options["mask_downsample"]
        has_mask = mask is not None and not negative
        small = np.zeros((size, size), dtype=np.float32)
        if has_mask:
            import cv2

            small = cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
        targets["mask_target"] = small[None]
        targets["mask_weight"] = np.asarray(float(has_mask), dtype=np.float32)
        return targets

    def loss(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        total, parts = super().loss(outputs, targets)
        mask_loss = self._mask_loss(outputs["mask"], targets)
        parts["mask"] = mask_loss.detach()
        return total + self.options["mask_weight"] * mask_loss, parts

    def _mask_loss(self, pred: torch.Tensor, targets: Mapping[str, torch.Tensor]) -> torch.Tensor:
        positive_cells = (targets["cls_label"] == 1).any(dim=1)  # (B, S, S)
        positive_cells &= targets["mask_weight"].view(-1, 1, 1) > 0
        if not positive_cells.any():
            return pred.sum() * 0.0
        batch_idx, rows, cols = torch.nonzero(positive_cells, as_tuple=True)
        side = round(pred.shape[1] ** 0.5)
        logits = pred.permute(0, 2, 3, 1)[batch_idx, rows, cols].reshape(-1, 1, side, side)
        gt = F.grid_sample(targets["mask_target"][batch_idx].float(),
                           self._windows(rows, cols, side, pred.device), align_corners=False)
        return F.binary_cross_entropy_with_logits(logits.float(), (gt > 0.5).float())

    def _windows(self, rows: torch.Tensor, cols: torch.Tensor, side: int, device: torch.device
                 ) -> torch.Tensor:
        """Sampling grids (normalised to the search patch) of the exemplar window per cell."""
        geom = self.geometry
        pos = torch.as_tensor(geom.positions(), dtype=torch.float32, device=device)
        steps = (torch.arange(side, device=device, dtype=torch.float32) + 0.5) / side - 0.5
        offsets = steps * geom.exemplar_size
        xs = pos[cols][:, None] + offsets[None, :]
        ys = pos[rows][:, None] + offsets[None, :]
        to_norm = 2.0 / geom.instance_size
        gx = (xs * to_norm - 1.0)[:, None, :].expand(-1, side, -1)
        gy = (ys * to_norm - 1.0)[:, :, None].expand(-1, -1, side)
        return torch.stack([gx, gy], dim=-1)
