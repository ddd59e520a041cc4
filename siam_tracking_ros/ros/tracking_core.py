"""The node's tracking logic without ROS: model (re)loading, target state machine, frame slots.

Shared by the plain and the lifecycle node. Threads: the node's executor calls :meth:`TrackingEngine.init`
and :meth:`TrackingEngine.reset`, a worker thread calls :meth:`TrackingEngine.step`, and a reload thread
builds new models; one lock guards the tracker and the target state.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np

from siam_tracking_ros.core.result import TrackResult


class TargetState(IntEnum):
    """Same values as the constants of ``siam_tracking_ros/msg/TrackedObject``."""

    IDLE = 0
    TRACKING = 1
    LOST = 2


@dataclass(frozen=True)
class ModelRequest:
    """Which model to run: everything whose change needs a rebuild."""

    tracker: str
    weights: str = ""
    device: str = "auto"
    half: bool = False
    overrides: tuple[tuple[str, Any], ...] = ()
    cuda_graphs: bool = False

    def describe(self) -> str:
        weights = self.weights or "packaged default weights"
        flags = (", fp16" if self.half else "") + (", CUDA graphs" if self.cuda_graphs else "")
        return f"'{self.tracker}' ({weights}, device {self.device}{flags})"


def build_model(request: ModelRequest):
    """Build a tracker for ``request`` through the registry (raises on any failure)."""
    from siam_tracking_ros.trackers import build_tracker

    weights = request.weights or None
    tracker = build_tracker(request.tracker, weights=weights, device=request.device,
                            **dict(request.overrides))
    if request.half:
        tracker.half()
    if request.cuda_graphs:
        tracker.use_cuda_graphs()
    return tracker


@dataclass
class StepOutcome:
    """What one processed frame produced."""

    state: TargetState
    result: TrackResult | None
    frame_count: int
    frames_since_seen: int
    tracker: str


@dataclass
class LostPolicy:
    """When a target counts as lost, and how wide to search while it is."""

    score_threshold: float = 0.3
    lost_frames: int = 5
    lost_search_scale: float = 2.0


class TrackingEngine:
    """Owns the tracker object and the IDLE / TRACKING / LOST state of the target."""

    def __init__(self, policy: LostPolicy | None = None,
                 builder: Callable[[ModelRequest], Any] = build_model,
                 log: Callable[[str, str], None] | None = None) -> None:
        self.policy = policy or LostPolicy()
        self._builder = builder
        self._log = log or (lambda level, text: None)
        self._lock = threading.RLock()
        self.tracker: Any = None
        self.loaded: ModelRequest | None = None
        self.load_error: str | None = None
        self.state = TargetState.IDLE
        self.frame_count = 0
        self.frames_since_seen = 0
        self.last_box: tuple[float, float, float, float] | None = None
        self._wide_search = False
        self._reload = ReloadWorker(self)

    # --- model --------------------------------------------------------------------------------
    @property
    def reloading(self) -> bool:
        """True while a model is being built in the background."""
        return self._reload.busy

    @property
    def ready(self) -> bool:
        return self.tracker is not None and not self.reloading

    def request_model(self, request: ModelRequest,
                      newest_frame: Callable[[], np.ndarray | None] | None = None,
                      done: Callable[[bool, str], None] | None = None) -> None:
        """Build ``request`` in the background; on success swap it in and re-init from the last box."""
        self._reload.submit(request, newest_frame, done)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no reload is pending or running; False on timeout."""
        return self._reload.wait_idle(timeout)

    def load_now(self, request: ModelRequest,
                 newest_frame: Callable[[], np.ndarray | None] | None = None) -> tuple[bool, str]:
        """Build and swap in synchronously (used by the reload thread)."""
        started = time.monotonic()
        try:
            tracker = self._builder(request)
        except Exception as exc:  # WeightsError, DeviceError, KeyError (unknown variant), ...
            reason = f"cannot load {request.describe()}: {_reason(exc)}"
            self.load_error = reason
            still = f"; still running {self.loaded.describe()}" if self.tracker is not None else ""
            self._log("error", reason + still)
            return False, reason
        with self._lock:
            self.tracker, self.loaded, self.load_error = tracker, request, None
            self._wide_search = False
            message = f"loaded {request.describe()} in {time.monotonic() - started:.1f} s"
            self._log("info", message)
            self._reinit_after_reload(newest_frame)
        return True, message

    def _reinit_after_reload(self, newest_frame: Callable[[], np.ndarray | None] | None) -> None:
        if self.state == TargetState.IDLE or self.last_box is None:
            return
        frame = newest_frame() if newest_frame else None
        if frame is None:
            self._go_idle("no frame to re-initialise the target after the reload")
            return
        ok, message = self._init_locked(frame, self.last_box)
        self._log("info" if ok else "warn", f"re-initialised target after reload: {message}")

    def unload(self) -> None:
        """Drop the model and the target (lifecycle cleanup)."""
        with self._lock:
            self.tracker, self.loaded = None, None
            self._go_idle("")

    # --- target -------------------------------------------------------------------------------
    def unavailable_reason(self) -> str | None:
        """Why init/reset cannot run now, or None."""
        if self.reloading:
            target = self._reload.current
            return (f"model is (re)loading{' ' + target.describe() if target else ''}; "
                    f"try again when it has loaded")
        if self.tracker is None:
            return f"no model loaded: {self.load_error or 'not configured'}"
        return None

    def init(self, frame: np.ndarray, box: Sequence[float]) -> tuple[bool, str]:
        """Start tracking ``box`` in ``frame``; ``(success, message)``."""
        reason = self.unavailable_reason()
        if reason:
            return False, reason
        with self._lock:
            return self._init_locked(frame, box)

    def _init_locked(self, frame: np.ndarray, box: Sequence[float]) -> tuple[bool, str]:
        from siam_tracking_ros.trackers.base import InvalidBoxError

        try:
            self.tracker.init(frame, box)
        except InvalidBoxError as exc:
            return False, f"invalid box: {exc}"
        except Exception as exc:
            return False, f"tracker init failed: {_reason(exc)}"
        self._set_wide_search(False)
        self.state, self.frame_count, self.frames_since_seen = TargetState.TRACKING, 0, 0
        self.last_box = tuple(float(v) for v in box)  # type: ignore[assignment]
        x, y, w, h = self.last_box
        return True, f"tracking with '{self.loaded.tracker}' from box ({x:.1f}, {y:.1f}, {w:.1f}, {h:.1f})"

    def reset(self) -> tuple[bool, str]:
        """Forget the target."""
        reason = self.unavailable_reason() if self.reloading else None
        if reason:
            return False, reason
        with self._lock:
            was = self.state
            self._go_idle("")
            self.last_box = None
        return True, f"target cleared (was {was.name})"

    def _go_idle(self, why: str) -> None:
        if self.tracker is not None:
            self._set_wide_search(False)
            self.tracker.reset()
        self.state, self.frame_count, self.frames_since_seen = TargetState.IDLE, 0, 0
        if why:
            self._log("warn", why)

    def step(self, frame: np.ndarray) -> StepOutcome:
        """Track one frame (or report IDLE)."""
        with self._lock:
            name = self.loaded.tracker if self.loaded else ""
            if self.state == TargetState.IDLE or self.tracker is None or not self.tracker.initialized:
                return StepOutcome(TargetState.IDLE, None, 0, 0, name)
            try:
                result = self.tracker.track(frame)
            except Exception as exc:
                self._go_idle(f"tracking failed, target dropped: {_reason(exc)}")
                return StepOutcome(TargetState.IDLE, None, 0, 0, name)
            self._update_state(result)
            return StepOutcome(self.state, result, self.frame_count, self.frames_since_seen, name)

    def _update_state(self, result: TrackResult) -> None:
        self.frame_count += 1
        policy = self.policy
        if result.score >= policy.score_threshold:
            self.frames_since_seen = 0
            self.last_box = tuple(float(v) for v in result.box)  # type: ignore[assignment]
            if self.state == TargetState.LOST:
                self.state = TargetState.TRACKING
                self._set_wide_search(False)
                self._log("info", f"target found again (score {result.score:.2f})")
            return
        self.frames_since_seen += 1
        if self.state == TargetState.TRACKING and self.frames_since_seen >= policy.lost_frames:
            self.state = TargetState.LOST
            self._set_wide_search(True)
            self._log("info", f"target lost: score below {policy.score_threshold} for "
                              f"{self.frames_since_seen} frames; searching")

    def _set_wide_search(self, enabled: bool) -> None:
        """Ask the tracker for a wider / global search while LOST, if it offers one."""
        if enabled == self._wide_search or self.tracker is None:
            return
        self._wide_search = enabled
        global_search = getattr(self.tracker, "enable_global_search", None)
        if callable(global_search):
            # back to the configured mode (a variant may run long-term search all the time)
            configured = bool(getattr(self.tracker.config, "long_term", False))
            try:
                global_search(enabled or configured)
                return
            except ValueError as exc:  # the variant has the method but not the mode
                self._log("warn", f"no global search while LOST: {_reason(exc)}")
        set_scale = getattr(self.tracker, "set_search_scale", None)
        if callable(set_scale):
            set_scale(self.policy.lost_search_scale if enabled else 1.0)

    @property
    def produces_mask(self) -> bool:
        return bool(getattr(self.tracker, "produces_mask", False))


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().strip("'\"") or type(exc).__name__
    return text.splitlines()[0]


class ReloadWorker:
    """One background thread that builds models; a newer request replaces a waiting one."""

    def __init__(self, engine: TrackingEngine) -> None:
        self._engine = engine
        self._cond = threading.Condition()
        self._pending: tuple | None = None
        self.current: ModelRequest | None = None
        self._thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._pending is not None or self.current is not None

    def submit(self, request: ModelRequest, newest_frame, done) -> None:
        with self._cond:
            if self._pending is not None and self._pending[2] is not None:
                self._pending[2](False, "superseded by a newer model request")
            self._pending = (request, newest_frame, done)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="model-reload", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._pending is None:
                    self._thread = None
                    self._cond.notify_all()
                    return
                (request, newest_frame, done), self._pending = self._pending, None
                self.current = request
            try:
                ok, message = self._engine.load_now(request, newest_frame)
            except Exception as exc:  # never let the reload thread die silently
                ok, message = False, f"reload of {request.describe()} failed: {_reason(exc)}"
                self._engine.load_error = message
            finally:
                with self._cond:
                    self.current = None
                    self._cond.notify_all()
            if done is not None:
                done(ok, message)

    def wait_idle(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending is not None or self.current is not None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True


# --- frames -----------------------------------------------------------------------------------
class LatestSlot:
    """Holds only the newest unprocessed item; a new one replaces it and counts as dropped."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self.dropped = 0

    def put(self, item: Any) -> bool:
        """Store ``item``; True when it replaced an unprocessed one."""
        with self._cond:
            replaced = self._item is not None
            if replaced:
                self.dropped += 1
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float) -> Any:
        """The newest item (clearing the slot), or None after ``timeout`` seconds."""
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def clear(self) -> None:
        with self._cond:
            self._item = None


class FrameBuffer:
    """The last few received items keyed by stamp (nanoseconds), for InitTarget with a stamp."""

    def __init__(self, size: int) -> None:
        self._items: deque[tuple[int, Any]] = deque(maxlen=max(1, size))
        self._lock = threading.Lock()

    def push(self, stamp_ns: int, item: Any) -> None:
        with self._lock:
            self._items.append((stamp_ns, item))

    def newest(self) -> tuple[int, Any] | None:
        with self._lock:
            return self._items[-1] if self._items else None

    def find(self, stamp_ns: int) -> Any:
        """The item with exactly this stamp, or None."""
        with self._lock:
            for stamp, item in reversed(self._items):
                if stamp == stamp_ns:
                    return item
        return None

    def stamp_range(self) -> tuple[int, int] | None:
        with self._lock:
            return (self._items[0][0], self._items[-1][0]) if self._items else None

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


# --- statistics -------------------------------------------------------------------------------
@dataclass
class RateStats:
    """Rolling fps and latency percentiles over the last 120 processed frames."""

    _times: deque = field(default_factory=lambda: deque(maxlen=120))
    _latency: deque = field(default_factory=lambda: deque(maxlen=120))
    _processing: deque = field(default_factory=lambda: deque(maxlen=120))
    processed: int = 0

    def add(self, now: float, latency_ms: float, processing_ms: float) -> None:
        self.processed += 1
        self._times.append(now)
        self._latency.append(latency_ms)
        self._processing.append(processing_ms)

    # readers run on other threads than add(): work on snapshots (tuple() copies under the GIL)
    def fps(self) -> float:
        times = tuple(self._times)
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def latency(self, q: float) -> float:
        values = tuple(self._latency)
        return float(np.percentile(values, q)) if values else float("nan")

    def processing(self, q: float) -> float:
        values = tuple(self._processing)
        return float(np.percentile(values, q)) if values else float("nan")


def config_values(config: Any) -> dict[str, Any]:
    """Field values of a config dataclass (empty for anything else)."""
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else {}
