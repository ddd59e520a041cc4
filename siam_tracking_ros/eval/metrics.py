"""Tracking metrics: one-pass (OTB/LaSOT style), VOT supervised (accuracy, failures, EAO) and
long-term (precision/recall/F1 over confidence thresholds).

Boxes are ``(N, 4)`` arrays of 0-based ``x, y, w, h``. Ground-truth rows that are NaN or have a
non-positive size mean "target absent" and are skipped by the one-pass metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from siam_tracking_ros.core.geometry import iou_xywh

#: IoU thresholds of the success plot (0, 0.05, ..., 1)
IOU_THRESHOLDS = np.linspace(0.0, 1.0, 21)
#: centre-error thresholds of the precision plot, pixels (0..50)
PIXEL_THRESHOLDS = np.arange(0, 51, dtype=np.float64)
#: normalised centre-error thresholds (0..0.5 in 51 steps)
NORM_THRESHOLDS = np.linspace(0.0, 0.5, 51)
PRECISION_PX = 20.0
NORM_PRECISION_AT = 0.2


def valid_rows(boxes: np.ndarray) -> np.ndarray:
    """Rows with finite values and positive width and height."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)


def box_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Row-wise IoU of ``xywh`` boxes; 0 where the prediction is empty or not finite."""
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    iou = np.where(valid_rows(pred), iou_xywh(pred, gt), 0.0)
    return np.clip(np.nan_to_num(iou, nan=0.0), 0.0, 1.0)


def centers(boxes: np.ndarray) -> np.ndarray:
    """Box centres ``x + w/2, y + h/2``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return boxes[:, :2] + boxes[:, 2:] / 2.0


def center_error(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Euclidean distance between centres in pixels; ``inf`` where the prediction is not finite."""
    err = np.linalg.norm(centers(pred) - centers(gt), axis=1)
    return np.where(np.isfinite(err), err, np.inf)


def normalized_center_error(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Centre distance with each axis divided by the ground-truth size (LaSOT's normalised error)."""
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    diff = (centers(pred) - centers(gt)) / gt[:, 2:]
    err = np.linalg.norm(diff, axis=1)
    return np.where(np.isfinite(err), err, np.inf)


def success_curve(ious: np.ndarray, thresholds: np.ndarray = IOU_THRESHOLDS) -> np.ndarray:
    """Fraction of frames whose IoU is strictly above each threshold."""
    ious = np.asarray(ious, dtype=np.float64)
    if ious.size == 0:
        return np.full(len(thresholds), np.nan)
    return (ious[:, None] > thresholds[None, :]).mean(axis=0)


def precision_curve(errors: np.ndarray, thresholds: np.ndarray = PIXEL_THRESHOLDS) -> np.ndarray:
    """Fraction of frames whose centre error is at most each threshold."""
    errors = np.asarray(errors, dtype=np.float64)
    if errors.size == 0:
        return np.full(len(thresholds), np.nan)
    return (errors[:, None] <= thresholds[None, :]).mean(axis=0)


@dataclass
class OpeScores:
    """One-pass metrics of one tracker on one sequence."""

    auc: float
    precision: float
    norm_precision: float
    mean_iou: float
    frames: int
    success_curve: np.ndarray
    precision_curve: np.ndarray
    norm_precision_curve: np.ndarray

    def summary(self) -> dict[str, float | int]:
        """The scalar metrics as a JSON-ready dict."""
        return {"auc": self.auc, "precision": self.precision, "norm_precision": self.norm_precision,
                "mean_iou": self.mean_iou, "frames": self.frames}


def ope_scores(pred: np.ndarray, gt: np.ndarray, skip: np.ndarray | None = None) -> OpeScores:
    """One-pass metrics over the frames with ground truth (rows in ``skip`` are left out too).

    Success AUC is the mean of the success curve over 21 IoU thresholds; precision is the
    fraction of frames within 20 px; normalised precision the fraction within 0.2 target sizes.
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    keep = valid_rows(gt)
    if skip is not None:
        keep &= ~np.asarray(skip, dtype=bool)
    pred, gt = pred[keep], gt[keep]
    ious = box_iou(pred, gt)
    errors = center_error(pred, gt)
    norm_errors = normalized_center_error(pred, gt)
    if ious.size == 0:
        nan = float("nan")
        return OpeScores(nan, nan, nan, nan, 0, success_curve(ious), precision_curve(errors),
                         precision_curve(norm_errors, NORM_THRESHOLDS))
    succ = success_curve(ious)
    return OpeScores(
        auc=float(np.mean(succ)),
        precision=float(np.mean(errors <= PRECISION_PX)),
        norm_precision=float(np.mean(norm_errors <= NORM_PRECISION_AT)),
        mean_iou=float(np.mean(ious)),
        frames=int(ious.size),
        success_curve=succ, precision_curve=precision_curve(errors),
        norm_precision_curve=precision_curve(norm_errors, NORM_THRESHOLDS),
    )


# --- VOT supervised (reset-based) protocol ---------------------------------------------------------

#: VOT's default interval of sequence lengths for EAO (VOT2018 short-term)
VOT_EAO_INTERVAL = (100, 356)


@dataclass
class SupervisedRun:
    """Per-frame record of a reset-based run.

    ``overlaps[t]`` is the IoU at frame ``t`` (NaN where the tracker was not running or the
    ground truth is absent); ``inits`` the frames where the tracker was (re)initialised and
    ``failures`` the frames where the overlap dropped to 0.
    """

    overlaps: np.ndarray
    inits: list[int]
    failures: list[int]


def vot_accuracy(run: SupervisedRun, burn_in: int = 10) -> float:
    """Mean overlap over tracked frames, leaving out ``burn_in`` frames after each (re)init."""
    keep = np.isfinite(run.overlaps)
    for start in run.inits:
        keep[start:start + burn_in] = False
    return float(np.mean(run.overlaps[keep])) if keep.any() else float("nan")


def eao_fragments(runs: list[SupervisedRun]) -> list[tuple[np.ndarray, bool]]:
    """Fragments of EAO: one per (re)initialisation, the overlaps from the init frame on, and
    whether it ended in a failure. Overlaps of frames with absent ground truth stay NaN."""
    fragments: list[tuple[np.ndarray, bool]] = []
    for run in runs:
        failures = sorted(run.failures)
        for start in run.inits:
            failure = next((f for f in failures if f >= start), None)
            stop = len(run.overlaps) if failure is None else failure + 1
            fragments.append((run.overlaps[start:stop], failure is not None))
    return fragments


def expected_overlap_curve(fragments: list[tuple[np.ndarray, bool]], max_length: int) -> np.ndarray:
    """``curve[n]``: expected average overlap over sequences of ``n`` frames.

    A fragment that failed is padded with zeros (it would have kept failing) and counts for every
    length; one that reached the end of its sequence counts only for lengths it covers. Each
    fragment's average leaves out its init frame and NaN (absent ground truth) frames.
    """
    curve = np.full(max_length + 1, np.nan)
    padded = np.full((len(fragments), max_length), np.nan)
    usable_to = np.zeros(len(fragments), dtype=np.int64)
    for i, (overlaps, failed) in enumerate(fragments):
        piece = overlaps[:max_length]
        if failed:
            padded[i] = 0.0
            usable_to[i] = max_length
        else:
            usable_to[i] = len(piece)
        padded[i, :len(piece)] = piece
    for length in range(2, max_length + 1):
        rows = padded[usable_to >= length, 1:length]
        if rows.size == 0:
            continue
        defined = np.isfinite(rows)
        counts = defined.sum(axis=1)
        sums = np.where(defined, rows, 0.0).sum(axis=1)
        means = sums[counts > 0] / counts[counts > 0]
        if means.size:
            curve[length] = float(np.mean(means))
    return curve


def eao(runs: list[SupervisedRun], interval: tuple[int, int] = VOT_EAO_INTERVAL) -> float:
    """Expected average overlap: the expected-overlap curve averaged over lengths in ``interval``
    (inclusive). Lengths with no usable fragment are left out; NaN if none is usable."""
    low, high = interval
    curve = expected_overlap_curve(eao_fragments(runs), high)
    part = curve[low:high + 1]
    part = part[np.isfinite(part)]
    return float(np.mean(part)) if part.size else float("nan")


# --- long-term: precision / recall / F over confidence thresholds --------------------------------

LT_THRESHOLDS = np.linspace(0.0, 1.0, 101)


def longterm_curves(pred: np.ndarray, scores: np.ndarray, gt: np.ndarray,
                    thresholds: np.ndarray = LT_THRESHOLDS) -> dict[str, np.ndarray]:
    """VOT-LT tracking precision and recall at each confidence threshold ``tau``.

    A frame "reports" the target when its score is at least ``tau``. Precision averages the IoU
    over reporting frames (0 where the target is absent); recall averages it over frames where
    the target is present (0 where nothing is reported). ``F = 2 Pr Re / (Pr + Re)``.
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    present = valid_rows(gt)
    overlap = np.where(present, box_iou(pred, np.where(present[:, None], gt, 0.0)), 0.0)
    reported = scores[:, None] >= thresholds[None, :]
    reported &= valid_rows(pred)[:, None]
    n_reported = reported.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(n_reported > 0, (overlap[:, None] * reported).sum(axis=0)
                             / np.maximum(n_reported, 1), np.nan)
    recall = ((overlap[:, None] * reported)[present].sum(axis=0) / max(int(present.sum()), 1)
              if present.any() else np.full(len(thresholds), np.nan))
    with np.errstate(invalid="ignore", divide="ignore"):
        f_score = 2 * precision * recall / (precision + recall)
    return {"thresholds": thresholds, "precision": precision, "recall": recall,
            "f_score": np.nan_to_num(f_score, nan=0.0)}


def longterm_summary(curves: dict[str, np.ndarray]) -> dict[str, float]:
    """Maximum F over thresholds, with the precision, recall and threshold where it is reached."""
    best = int(np.argmax(curves["f_score"]))
    return {"f_score": float(curves["f_score"][best]), "lt_precision": float(curves["precision"][best]),
            "lt_recall": float(curves["recall"][best]), "threshold": float(curves["thresholds"][best])}
