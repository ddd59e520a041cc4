"""Validation: run the real tracker over held-out sequences and report OTB success AUC."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from siam_tracking_ros.data.sequences import Sequence, find_sequences
from siam_tracking_ros.eval.metrics import ope_scores


def success_auc(pred: np.ndarray, gt: np.ndarray) -> float:
    """OTB success AUC (:func:`siam_tracking_ros.eval.metrics.ope_scores`); frames without ground
    truth are skipped, empty predictions count as IoU 0."""
    return float(ope_scores(pred, gt).auc)


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
