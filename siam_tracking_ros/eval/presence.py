"""Is the target there? Absent-target runs, score calibration and presence metrics.

A *spliced* run initialises on sequence A, tracks ``n`` frames of A, then ``n`` frames of
another sequence B, where A's target is absent. With the real absent frames (``nan`` ground
truth) and blank frames this gives frames where the right answer is "not there". A frame counts
as *present* when the reported box holds the target: IoU >= 0.5 with the ground truth.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from siam_tracking_ros.core.geometry import iou_xywh

PRESENT_IOU = 0.5


@dataclass
class Segment:
    """Frames fed to a tracker after one init: ``(frame, ground-truth box or None)``."""

    name: str
    init_frame: np.ndarray
    init_box: np.ndarray
    frames: list[tuple[Any, np.ndarray | None]]
    #: index in ``frames`` where A's target leaves for good (None: never)
    absent_from: int | None = None


@dataclass
class PresenceSamples:
    """Per-frame raw and published scores with the truth (present = IoU >= 0.5)."""

    raw_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    present: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    target_visible: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def extend(self, other: PresenceSamples) -> None:
        for key in ("raw_scores", "scores", "present", "target_visible"):
            setattr(self, key, np.concatenate([getattr(self, key), getattr(other, key)]))


def _frames(sequence: Any, indices: Iterable[int]) -> Iterator[tuple[Any, np.ndarray | None]]:
    for index in indices:
        box = sequence.boxes[index]
        yield _LazyFrame(sequence, index), (box if np.isfinite(box).all() else None)


class _LazyFrame:
    """A sequence frame read when the run needs it (keeps memory flat)."""

    def __init__(self, sequence: Any, index: int) -> None:
        self.sequence = sequence
        self.index = index

    def load(self) -> np.ndarray:
        return self.sequence.frame(self.index)


def own_segment(sequence: Any, max_frames: int | None = None) -> Segment:
    """The sequence as it is (its real absent frames included)."""
    start = sequence.first_valid()
    stop = len(sequence) if max_frames is None else min(len(sequence), start + max_frames)
    return Segment(sequence.name, sequence.frame(start), sequence.boxes[start],
                   list(_frames(sequence, range(start + 1, stop))))


def spliced_segment(first: Any, second: Any, frames_each: int) -> Segment:
    """Init on ``first``, ``frames_each`` of its frames, then ``frames_each`` frames of ``second``."""
    start = first.first_valid()
    own = list(_frames(first, range(start + 1, min(len(first), start + 1 + frames_each))))
    other = [(frame, None) for frame, _ in _frames(second, range(min(len(second), frames_each)))]
    return Segment(f"{first.name}+{second.name}", first.frame(start), first.boxes[start],
                   own + other, absent_from=len(own))


def blank_segment(sequence: Any, frames_each: int, value: int = 0) -> Segment:
    """Init on ``sequence``, a few of its frames, then ``frames_each`` constant frames."""
    start = sequence.first_valid()
    own = list(_frames(sequence, range(start + 1, min(len(sequence), start + 1 + frames_each // 2))))
    first = sequence.frame(start)
    blank = np.full_like(first, value)
    return Segment(f"{sequence.name}+blank{value}", first, sequence.boxes[start],
                   own + [(blank, None)] * frames_each, absent_from=len(own))


def run_segment(tracker: Any, segment: Segment, on_result: Any = None) -> PresenceSamples:
    """Track a segment; collect scores and the truth. ``on_result(result)`` sees every result."""
    tracker.init(segment.init_frame, segment.init_box)
    raw, published, present, visible = [], [], [], []
    for frame, truth in segment.frames:
        image = frame.load() if isinstance(frame, _LazyFrame) else frame
        result = tracker.track(image)
        if on_result is not None:
            on_result(result)
        raw.append(float(result.extra.get("raw_score", result.score)))
        published.append(float(result.score))
        visible.append(truth is not None)
        present.append(truth is not None and iou_xywh(result.box, truth) >= PRESENT_IOU)
    tracker.reset()
    return PresenceSamples(np.asarray(raw), np.asarray(published), np.asarray(present, bool),
                           np.asarray(visible, bool))


def calibration_segments(sequences: list[Any], splice_frames: int, max_frames: int | None) -> list[Segment]:
    """Each sequence on its own, and each spliced with the next one (absent target)."""
    segments = [own_segment(s, max_frames) for s in sequences]
    for index, first in enumerate(sequences):
        if len(sequences) > 1:
            segments.append(spliced_segment(first, sequences[(index + 1) % len(sequences)], splice_frames))
        segments.append(blank_segment(first, splice_frames // 2, value=index * 60 % 256))
    return segments


def collect_presence_samples(tracker: Any, sequences: list[Any], splice_frames: int = 60,
                             max_frames: int | None = 300) -> PresenceSamples:
    """Samples of every calibration segment of ``sequences`` (see :func:`calibration_segments`)."""
    samples = PresenceSamples()
    for segment in calibration_segments(sequences, splice_frames, max_frames):
        samples.extend(run_segment(tracker, segment))
    return samples


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def fit_platt(raw_scores: np.ndarray, present: np.ndarray, iterations: int = 100,
              ridge: float = 1e-2) -> tuple[float, float]:
    """Platt scaling ``P(present) = sigmoid(a * logit(raw) + b)`` by damped Newton steps.

    Platt's smoothed targets and a small ridge towards ``(a, b) = (1, 0)`` keep the fit finite
    on separable or constant scores; ``ValueError`` without both present and absent samples.
    """
    y = np.asarray(present, bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        raise ValueError(f"calibration needs present and absent frames, got {positives} / {negatives}")
    target = np.where(y, (positives + 1.0) / (positives + 2.0), 1.0 / (negatives + 2.0))
    x = _logit(raw_scores)
    a, b = 1.0, 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(a * x + b)))
        weight = p * (1 - p) + 1e-9
        gradient = np.array([np.sum((p - target) * x) + ridge * (a - 1.0), np.sum(p - target) + ridge * b])
        hessian = np.array([[np.sum(weight * x * x), np.sum(weight * x)],
                            [np.sum(weight * x), np.sum(weight)]]) + ridge * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        step *= min(1.0, 5.0 / max(np.abs(step).max(), 1e-12))
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-9:
            break
    return float(a), float(b)


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (probability a positive outscores a negative; ties count half)."""
    scores = np.asarray(scores, np.float64)
    positive = np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks over ties
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def reliability_bins(scores: np.ndarray, present: np.ndarray, bins: int = 10
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per score bin: mean score, observed presence rate, count (empty bins are nan)."""
    scores = np.asarray(scores, np.float64)
    present = np.asarray(present, bool)
    index = np.minimum((scores * bins).astype(int), bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore"):
        mean_score = np.bincount(index, scores, bins) / counts
        observed = np.bincount(index, present.astype(float), bins) / counts
    return mean_score, observed, counts
