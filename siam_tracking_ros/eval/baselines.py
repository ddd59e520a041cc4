"""OpenCV trackers behind the same small interface as ours (``init``, ``track -> TrackResult``).

Names: ``opencv-csrt``, ``opencv-kcf``, ``opencv-mil`` and ``opencv-nano`` (OpenCV's NanoTrack,
which needs the ONNX backbone and neck/head files).

Failed updates: when OpenCV reports ``ok=False`` (KCF does once its response peak drops, and
rarely recovers) the result repeats the last good box with score 0 and ``extra["ok"] = False``.
CSRT, KCF and MIL publish no confidence, so their score is 1 on a successful update; Nano's score
is its own tracking score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from siam_tracking_ros.core.result import TrackResult
from siam_tracking_ros.trackers.base import validate_init_box

#: where OpenCV's NanoTrack v2 ONNX pair lives in a developer checkout (may not exist)
DEFAULT_NANO_DIR = (Path(__file__).resolve().parents[2].parent / "shared" / "data" / "weights"
                    / "nanotrack" / "nanotrackv2")
DEFAULT_NANO_BACKBONE = DEFAULT_NANO_DIR / "nanotrack_backbone_sim.onnx"
DEFAULT_NANO_NECKHEAD = DEFAULT_NANO_DIR / "nanotrack_head_sim.onnx"


class OpenCVTracker:
    """Adapter from a ``cv2.Tracker`` factory to the project's tracker interface."""

    def __init__(self, name: str, factory: Callable[[], cv2.Tracker],
                 score_fn: Callable[[cv2.Tracker], float] | None = None) -> None:
        self.name = name
        self._factory = factory
        self._score_fn = score_fn
        self._tracker: cv2.Tracker | None = None
        self._last_box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    @property
    def initialized(self) -> bool:
        return self._tracker is not None

    def init(self, frame: np.ndarray, box: Sequence[float]) -> None:
        """Start tracking ``box`` (``x, y, w, h``) in ``frame``; a fresh OpenCV tracker each time."""
        x, y, w, h = validate_init_box(box, frame.shape)
        rect = (round(x), round(y), max(1, round(w)), max(1, round(h)))
        self._tracker = self._factory()
        self._tracker.init(frame, rect)
        self._last_box = (float(x), float(y), float(w), float(h))

    def track(self, frame: np.ndarray) -> TrackResult:
        """Update on ``frame``; on failure keep the last box with score 0."""
        if self._tracker is None:
            raise RuntimeError(f"{self.name}: track() called before init()")
        ok, rect = self._tracker.update(frame)
        if not ok or rect[2] <= 0 or rect[3] <= 0:
            return TrackResult(self._last_box, 0.0, extra={"ok": False})
        self._last_box = tuple(float(v) for v in rect)  # type: ignore[assignment]
        score = 1.0 if self._score_fn is None else float(self._score_fn(self._tracker))
        return TrackResult(self._last_box, score, extra={"ok": True})

    def reset(self) -> None:
        """Forget the target."""
        self._tracker = None


def _nano_factory(backbone: Path, neckhead: Path) -> Callable[[], cv2.Tracker]:
    for path in (backbone, neckhead):
        if not Path(path).is_file():
            raise FileNotFoundError(
                f"opencv-nano needs its ONNX files: {path} not found (use --nano-backbone/--nano-neckhead)")

    def make() -> cv2.Tracker:
        params = cv2.TrackerNano_Params()
        params.backbone = str(backbone)
        params.neckhead = str(neckhead)
        return cv2.TrackerNano.create(params)

    return make


BASELINES = ("opencv-csrt", "opencv-kcf", "opencv-mil", "opencv-nano")


def is_baseline(name: str) -> bool:
    """Whether ``name`` is one of the OpenCV baselines."""
    return name in BASELINES


def build_baseline(name: str, nano_backbone: str | Path | None = None,
                   nano_neckhead: str | Path | None = None) -> OpenCVTracker:
    """An OpenCV baseline by name (see :data:`BASELINES`)."""
    if name == "opencv-csrt":
        return OpenCVTracker(name, cv2.TrackerCSRT.create)
    if name == "opencv-kcf":
        return OpenCVTracker(name, cv2.TrackerKCF.create)
    if name == "opencv-mil":
        return OpenCVTracker(name, cv2.TrackerMIL.create)
    if name == "opencv-nano":
        factory = _nano_factory(Path(nano_backbone or DEFAULT_NANO_BACKBONE),
                                Path(nano_neckhead or DEFAULT_NANO_NECKHEAD))
        return OpenCVTracker(name, factory, score_fn=lambda t: t.getTrackingScore())
    raise KeyError(f"unknown baseline '{name}'; known: {', '.join(BASELINES)}")
