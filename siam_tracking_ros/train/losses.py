"""Loss functions shared by the objectives (all return scalars, safe with zero positives)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def balanced_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Two-class cross-entropy, averaged over positives and negatives separately, then 0.5 each.

    ``logits (N, 2)`` (background, foreground), ``labels (N,)`` in ``{1, 0, -1}`` (-1 ignored).
    A set that is empty in the batch contributes 0.
    """
    log_prob = F.log_softmax(logits.float(), dim=-1)
    total = logits.new_zeros((), dtype=torch.float32)
    for value in (1, 0):
        chosen = labels == value
        if chosen.any():
            total = total + 0.5 * F.nll_loss(log_prob[chosen], labels[chosen].long())
    return total


def balanced_logistic(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """SiamFC logistic loss ``log(1 + exp(-y s))`` with ``y`` in {+1, -1} from labels {1, 0},
    weighted so positives and negatives each weigh 0.5 (labels -1 are ignored)."""
    logits = logits.float()
    total = logits.new_zeros(())
    for value in (1, 0):
        chosen = labels == value
        if chosen.any():
            target = torch.full_like(logits[chosen], float(value))
            total = total + 0.5 * F.binary_cross_entropy_with_logits(logits[chosen], target)
    return total


def weighted_smooth_l1(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
                       beta: float = 1.0 / 9.0) -> torch.Tensor:
    """``sum(weight * smoothL1(pred - target))`` over coordinates, divided by the batch size.

    ``pred``/``target`` ``(B, 4, ...)``, ``weight`` ``(B, ...)`` (e.g. ``1 / num_pos`` at
    positives, 0 elsewhere).
    """
    diff = F.smooth_l1_loss(pred.float(), target.float(), reduction="none", beta=beta).sum(dim=1)
    return (diff * weight).sum() / max(pred.shape[0], 1)


def ltrb_iou(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and enclosing-box area ratio term of two sets of ``(l, t, r, b)`` distances from the
    same points, shape ``(N, 4)``. Returns ``(iou, giou)``."""
    pred = pred.float()
    target = target.float()
    pred_area = (pred[:, 0] + pred[:, 2]) * (pred[:, 1] + pred[:, 3])
    target_area = (target[:, 0] + target[:, 2]) * (target[:, 1] + target[:, 3])
    w_inter = torch.min(pred[:, 0], target[:, 0]) + torch.min(pred[:, 2], target[:, 2])
    h_inter = torch.min(pred[:, 1], target[:, 1]) + torch.min(pred[:, 3], target[:, 3])
    inter = w_inter.clamp(min=0) * h_inter.clamp(min=0)
    union = pred_area + target_area - inter
    iou = (inter + 1.0) / (union + 1.0)
    w_hull = torch.max(pred[:, 0], target[:, 0]) + torch.max(pred[:, 2], target[:, 2])
    h_hull = torch.max(pred[:, 1], target[:, 1]) + torch.max(pred[:, 3], target[:, 3])
    hull = w_hull * h_hull + 1e-7
    giou = iou - (hull - union) / hull
    return iou, giou


def iou_loss(pred: torch.Tensor, target: torch.Tensor, mode: str = "linear") -> torch.Tensor:
    """Mean IoU loss over ``(N, 4)`` ltrb pairs: ``linear`` 1-IoU, ``log`` -log IoU, ``giou`` 1-GIoU.
    Zero for ``N == 0``."""
    if pred.shape[0] == 0:
        return pred.sum() * 0.0
    iou, giou = ltrb_iou(pred, target)
    if mode == "linear":
        return (1.0 - iou).mean()
    if mode == "log":
        return (-torch.log(iou.clamp(min=1e-6))).mean()
    if mode == "giou":
        return (1.0 - giou).mean()
    raise ValueError(f"unknown IoU loss mode '{mode}': use linear, log or giou")


def contrastive_loss(first: torch.Tensor, second: torch.Tensor, same: torch.Tensor,
                     margin: float = 1.0) -> torch.Tensor:
    """SINT's margin contrastive loss on embeddings: ``0.5 d^2`` (same) / ``0.5 max(0, m - d)^2``."""
    distance = (first - second).pow(2).sum(dim=1).clamp(min=1e-12).sqrt()
    loss = torch.where(same, 0.5 * distance.pow(2), 0.5 * (margin - distance).clamp(min=0).pow(2))
    return loss.mean()
