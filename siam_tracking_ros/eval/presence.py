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


def _platt_loss(a: float, b: float, x: np.ndarray, target: np.ndarray, ridge: float) -> float:
    z = a * x + b
    cross_entropy = np.sum(target * np.logaddexp(0.0, -z) + (1.0 - target) * np.logaddexp(0.0, z))
    return float(cross_entropy + 0.5 * ridge * ((a - 1.0) ** 2 + b ** 2))


def fit_platt(raw_scores: np.ndarray, present: np.ndarray, iterations: int = 100,
              ridge: float = 1e-2) -> tuple[float, float]:
    """Platt scaling ``P(present) = sigmoid(a * logit(raw) + b)`` by Newton steps with a
    backtracking line search (every accepted step lowers the loss, so it cannot run off on
    saturated scores).

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
    loss = _platt_loss(a, b, x, target, ridge)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(a * x + b)))
        weight = p * (1 - p) + 1e-9
        gradient = np.array([np.sum((p - target) * x) + ridge * (a - 1.0), np.sum(p - target) + ridge * b])
        hessian = np.array([[np.sum(weight * x * x), np.sum(weight * x)],
                            [np.sum(weight * x), np.sum(weight)]]) + ridge * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        scale = 1.0
        while scale > 1e-6:
            trial = _platt_loss(a - scale * step[0], b - scale * step[1], x, target, ridge)
            if trial <= loss:
                break
            scale *= 0.5
        else:
            break  # no step lowers the loss: at the minimum (to rounding)
        a, b, loss = a - scale * step[0], b - scale * step[1], trial
        if np.abs(scale * step).max() < 1e-9:
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


# ------------------------------------------------------------------ the presence protocol

def return_segment(first: Any, second: Any, frames_each: int) -> Segment:
    """A's first frames, ``frames_each`` frames of B (absent), then A's next frames (it returns)."""
    start = first.first_valid()
    before = list(_frames(first, range(start + 1, min(len(first), start + 1 + frames_each))))
    away = [(frame, None) for frame, _ in _frames(second, range(min(len(second), frames_each)))]
    resume = start + 1 + frames_each
    after = list(_frames(first, range(resume, min(len(first), resume + frames_each))))
    return Segment(f"{first.name}+{second.name}+{first.name}", first.frame(start), first.boxes[start],
                   before + away + after, absent_from=len(before))


def presence_segments(sequences: list[Any], frames_each: int, max_frames: int | None,
                      backgrounds: list[Any] | None = None) -> list[Segment]:
    """Every sequence as it is (its real absent frames), spliced with the next one, returning
    after the next one, and followed by black frames.

    With ``backgrounds`` (sequences whose frames serve only as "target absent"; e.g. the train
    split behind validation targets, a harder protocol than the targets' own few scenes), each
    sequence instead returns after every background (A-B-A: the splice and the return in one).
    """
    segments = [own_segment(s, max_frames) for s in sequences]
    for index, first in enumerate(sequences):
        if backgrounds:
            segments.extend(return_segment(first, second, frames_each) for second in backgrounds)
        elif len(sequences) > 1:
            second = sequences[(index + 1) % len(sequences)]
            segments.append(spliced_segment(first, second, frames_each))
            segments.append(return_segment(first, second, frames_each))
        segments.append(blank_segment(first, frames_each, value=0))
    return segments


@dataclass
class SegmentRun:
    """Per-frame outcome of one segment under the state machine."""

    segment: Segment
    boxes: np.ndarray
    scores: np.ndarray
    states: np.ndarray
    visible: np.ndarray
    present: np.ndarray


def run_with_states(tracker: Any, segment: Segment, policy: Any) -> SegmentRun:
    """Track a segment as the node does: one state machine, wider search while LOST."""
    from siam_tracking_ros.core.presence import PresenceStateMachine, TargetState

    machine = PresenceStateMachine(policy)
    set_scale = getattr(tracker, "set_search_scale", None)
    tracker.init(segment.init_frame, segment.init_box)
    machine.start()
    boxes, scores, states, visible, present = [], [], [], [], []
    for frame, truth in segment.frames:
        image = frame.load() if isinstance(frame, _LazyFrame) else frame
        result = tracker.track(image)
        state = machine.update(float(result.score))
        if set_scale is not None and (machine.just_lost or machine.just_found):
            set_scale(policy.lost_search_scale if state == TargetState.LOST else 1.0)
        boxes.append(result.box)
        scores.append(float(result.score))
        states.append(int(state))
        visible.append(truth is not None)
        present.append(truth is not None and iou_xywh(result.box, truth) >= PRESENT_IOU)
    if set_scale is not None:
        set_scale(1.0)
    tracker.reset()
    return SegmentRun(segment, np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores),
                      np.asarray(states), np.asarray(visible, bool), np.asarray(present, bool))


def _after_transitions(flags: np.ndarray, settle: int) -> np.ndarray:
    """``flags`` with the first ``settle`` frames of every run of True removed."""
    keep = flags.copy()
    run = 0
    for i, flag in enumerate(flags):
        run = run + 1 if flag else 0
        if flag and run <= settle:
            keep[i] = False
    return keep


def reacquire_frames(run: SegmentRun) -> float | None:
    """Frames from the target's return until TRACKING on it (IoU >= 0.5); inf if never; None if
    the segment has no return."""
    from siam_tracking_ros.core.presence import TargetState

    absent = ~run.visible
    if run.segment.absent_from is None or not absent.any():
        return None
    last_absent = int(np.flatnonzero(absent)[-1])
    if last_absent + 1 >= len(run.visible):
        return None
    for offset, index in enumerate(range(last_absent + 1, len(run.visible))):
        if run.states[index] == TargetState.TRACKING and run.present[index]:
            return float(offset)
    return float("inf")


def presence_summary(runs: list[SegmentRun], policy: Any) -> dict[str, Any]:
    """The presence metrics of a tracker over its segment runs (see ``siam-eval --mode presence``)."""
    from siam_tracking_ros.core.presence import TargetState

    scores = np.concatenate([r.scores for r in runs])
    visible = np.concatenate([r.visible for r in runs])
    present = np.concatenate([r.present for r in runs])
    absent_counted = np.concatenate([_after_transitions(~r.visible, int(policy.lost_frames)) for r in runs])
    states = np.concatenate([r.states for r in runs])
    reacquired = [f for f in (reacquire_frames(r) for r in runs) if f is not None]
    finite = [f for f in reacquired if np.isfinite(f)]
    return {
        "roc_auc": roc_auc(scores, visible),
        "roc_auc_iou": roc_auc(scores, present),
        "absent_lost": float(np.mean(states[absent_counted] == TargetState.LOST)) if absent_counted.any()
        else float("nan"),
        "present_tracking": float(np.mean(states[visible] == TargetState.TRACKING)) if visible.any()
        else float("nan"),
        "reacquired": float(len(finite) / len(reacquired)) if reacquired else float("nan"),
        "reacquire_frames": float(np.median(finite)) if finite else float("nan"),
        "absent_frames": int((~visible).sum()),
        "present_frames": int(visible.sum()),
    }


def evaluate_presence(tracker: Any, sequences: list[Any], policy: Any, frames_each: int = 60,
                      max_frames: int | None = None, progress: Any = None,
                      backgrounds: list[Any] | None = None
                      ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Run the protocol (:func:`presence_segments`); returns the summary and the pooled per-frame
    arrays (for plots and long-term P/R/F): ``boxes``, ``scores``, ``gt`` (nan where absent),
    ``present``."""
    from siam_tracking_ros.eval.metrics import longterm_curves, longterm_summary

    runs = []
    for segment in presence_segments(sequences, frames_each, max_frames, backgrounds):
        runs.append(run_with_states(tracker, segment, policy))
        if progress is not None:
            progress(len(segment.frames))
    summary = presence_summary(runs, policy)
    gt = np.concatenate([np.asarray([t if t is not None else [np.nan] * 4 for _, t in r.segment.frames],
                                    np.float64).reshape(-1, 4) for r in runs])
    boxes = np.concatenate([r.boxes for r in runs])
    scores = np.concatenate([r.scores for r in runs])
    summary.update(longterm_summary(longterm_curves(boxes, scores, gt)))
    pooled = {"boxes": boxes, "scores": scores, "gt": gt,
              "present": np.concatenate([r.present for r in runs])}
    return summary, pooled
