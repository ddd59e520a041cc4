"""Run a tracker over a sequence: one-pass (OPE) and VOT-style supervised (reset-based) protocols.

Trackers are anything with ``init(frame, box)`` and ``track(frame) -> TrackResult`` (our
registry trackers and the OpenCV baselines). Times cover the tracker call only (frame decoding
is excluded) and include a CUDA synchronisation when the tracker runs on a GPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from siam_tracking_ros.core.result import TrackResult
from siam_tracking_ros.data.sequences import Sequence
from siam_tracking_ros.eval.metrics import OpeScores, SupervisedRun, box_iou, ope_scores, valid_rows


class Tracker(Protocol):
    """The interface the runner needs."""

    def init(self, frame: np.ndarray, box: Any) -> None: ...

    def track(self, frame: np.ndarray) -> TrackResult: ...


@dataclass
class SequenceRecord:
    """Per-frame output of one run: boxes ``(N, 4)`` (NaN where not tracked), scores, seconds
    per tracker call, the frames where the tracker was (re)initialised and (supervised) failed."""

    boxes: np.ndarray
    scores: np.ndarray
    times: np.ndarray
    inits: list[int] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)

    @classmethod
    def empty(cls, n: int) -> SequenceRecord:
        return cls(np.full((n, 4), np.nan), np.full(n, np.nan), np.full(n, np.nan))

    def tracked_mask(self) -> np.ndarray:
        """Frames with a ``track`` call (init frames excluded)."""
        mask = np.isfinite(self.times)
        mask[self.inits] = False
        return mask

    def fps(self) -> float:
        """Tracked frames over the time spent in ``track``."""
        tracked = self.tracked_mask()
        total = float(np.sum(self.times[tracked]))
        return float(tracked.sum() / total) if total > 0 else float("nan")

    def save_csv(self, path: Path) -> None:
        """``frame,x,y,w,h,score,time_s,event`` (event: init, failure or empty)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        events = {i: "init" for i in self.inits} | {i: "failure" for i in self.failures}
        lines = ["frame,x,y,w,h,score,time_s,event"]
        for i, (box, score, seconds) in enumerate(zip(self.boxes, self.scores, self.times, strict=True)):
            values = ",".join(f"{v:.3f}" for v in box)
            lines.append(f"{i},{values},{score:.5f},{seconds:.6f},{events.get(i, '')}")
        path.write_text("\n".join(lines) + "\n")


def synchronizer(tracker: Any) -> Callable[[], None]:
    """A no-op, or ``torch.cuda.synchronize`` for trackers whose ``device`` is CUDA."""
    device = getattr(tracker, "device", None)
    if isinstance(device, torch.device) and device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def _timed(call: Callable[[], Any], sync: Callable[[], None]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = call()
    sync()
    return out, time.perf_counter() - start


def _store(record: SequenceRecord, index: int, result: TrackResult, seconds: float) -> None:
    record.boxes[index] = result.box
    record.scores[index] = result.score
    record.times[index] = seconds


def run_ope(tracker: Tracker, sequence: Sequence, max_frames: int | None = None,
            progress: Callable[[int], None] | None = None) -> SequenceRecord:
    """One pass: init on the first annotated frame with its ground truth, track every later frame."""
    n = len(sequence) if max_frames is None else min(len(sequence), max_frames)
    record = SequenceRecord.empty(n)
    sync = synchronizer(tracker)
    start = sequence.first_valid()
    box = sequence.boxes[start]
    _, seconds = _timed(lambda: tracker.init(sequence.frame(start), box), sync)
    _store(record, start, TrackResult(tuple(box), 1.0), seconds)
    record.inits.append(start)
    for index in range(start + 1, n):
        frame = sequence.frame(index)
        result, seconds = _timed(lambda frame=frame: tracker.track(frame), sync)
        _store(record, index, result, seconds)
        if progress:
            progress(1)
    return record


def score_ope(record: SequenceRecord, sequence: Sequence) -> OpeScores:
    """OPE metrics of ``record`` against ``sequence``'s ground truth; init frames are not scored."""
    count = len(record.boxes)
    skip = np.zeros(count, dtype=bool)
    skip[record.inits] = True
    return ope_scores(record.boxes, sequence.boxes[:count], skip=skip)


def run_supervised(tracker: Tracker, sequence: Sequence, skip: int = 5, max_frames: int | None = None,
                   progress: Callable[[int], None] | None = None) -> SequenceRecord:
    """VOT reset-based run: a frame whose IoU with present ground truth is 0 is a failure; the
    tracker is re-initialised ``skip`` frames later (on the next annotated frame from there)."""
    n = len(sequence) if max_frames is None else min(len(sequence), max_frames)
    record = SequenceRecord.empty(n)
    sync = synchronizer(tracker)
    valid = valid_rows(sequence.boxes[:n])
    index = _next_valid(valid, 0)
    tracking = False
    while index is not None and index < n:
        frame = sequence.frame(index)
        if not tracking:
            box = sequence.boxes[index]
            _, seconds = _timed(lambda frame=frame, box=box: tracker.init(frame, box), sync)
            _store(record, index, TrackResult(tuple(box), 1.0), seconds)
            record.inits.append(index)
            tracking = True
            index += 1
            continue
        result, seconds = _timed(lambda frame=frame: tracker.track(frame), sync)
        _store(record, index, result, seconds)
        if progress:
            progress(1)
        if valid[index] and box_iou(record.boxes[index], sequence.boxes[index])[0] <= 0.0:
            record.failures.append(index)
            tracking = False
            index = _next_valid(valid, index + skip)
            continue
        index += 1
    return record


def _next_valid(valid: np.ndarray, start: int) -> int | None:
    following = np.flatnonzero(valid[start:])
    return int(start + following[0]) if following.size else None


def supervised_overlaps(record: SequenceRecord, gt: np.ndarray) -> SupervisedRun:
    """Per-frame overlaps of a supervised record (NaN where not tracked or no ground truth)."""
    gt = gt[:len(record.boxes)]
    present = valid_rows(gt) & np.isfinite(record.times)
    overlaps = np.full(len(gt), np.nan)
    overlaps[present] = box_iou(record.boxes[present], gt[present])
    return SupervisedRun(overlaps, list(record.inits), list(record.failures))
