"""Validation: run the real tracker over held-out sequences and report OTB success AUC."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from siam_tracking_ros.data.sequences import Sequence, find_sequences

try:  # the full metrics module, when present
    from siam_tracking_ros.eval.metrics import ope_scores as _ope_scores
except ImportError:  # pragma: no cover - depends on the checkout
    _ope_scores = None

IOU_THRESHOLDS = np.linspace(0.0, 1.0, 21)


def success_auc(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean over 21 IoU thresholds 0..1 of the fraction of frames with IoU > threshold.

    Frames whose ground truth is absent (NaN or empty) are skipped; empty predictions count as
    IoU 0.
    """
    if _ope_scores is not None:
        return float(_ope_scores(pred, gt).auc)
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    keep = np.isfinite(gt).all(axis=1) & (gt[:, 2:] > 0).all(axis=1)
    pred, gt = pred[keep], gt[keep]
    if len(gt) == 0:
        return float("nan")
    x1 = np.maximum(pred[:, 0], gt[:, 0])
    y1 = np.maximum(pred[:, 1], gt[:, 1])
    x2 = np.minimum(pred[:, 0] + pred[:, 2], gt[:, 0] + gt[:, 2])
    y2 = np.minimum(pred[:, 1] + pred[:, 3], gt[:, 1] + gt[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = pred[:, 2] * pred[:, 3] + gt[:, 2] * gt[:, 3] - inter
    iou = np.nan_to_num(np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0))
    return float((iou[:, None] > IOU_THRESHOLDS[None, :]).mean())


def track_sequence(tracker: Any, sequence: Sequence, max_frames: int | None = None) -> np.ndarray:
    """One-pass run: init on the first annotated frame, track the rest; boxes ``(N, 4)``."""
    n = len(sequence) if max_frames is None else min(len(sequence), max_frames)
    boxes = np.full((n, 4), np.nan)
    start = sequence.first_valid()
    tracker.init(sequence.frame(start), sequence.boxes[start])
    boxes[start] = sequence.boxes[start]
    for index in range(start + 1, n):
        boxes[index] = tracker.track(sequence.frame(index)).box
    return boxes


def validate_weights(variant: str, weights: str | Path, sequences: list[Sequence],
                     device: str = "cpu", max_frames: int | None = None) -> dict[str, float]:
    """Success AUC per sequence and their mean (``"mean"``) of ``variant`` with ``weights``."""
    from siam_tracking_ros.trackers.registry import build_tracker

    tracker = build_tracker(variant, weights=str(weights), device=device)
    scores = {}
    for sequence in sequences:
        boxes = track_sequence(tracker, sequence, max_frames)
        scores[sequence.name] = success_auc(boxes, sequence.boxes[:len(boxes)])
        tracker.reset()
    scores["mean"] = float(np.mean(list(scores.values()))) if scores else float("nan")
    return scores


def load_validation_sequences(root: str | Path, names: list[str]) -> list[Sequence]:
    """The named sequences under ``root``."""
    return find_sequences(root, names) if names else []
