"""The node's tracking logic without ROS: model (re)loading, target state, frame slots, stream checks.

Shared by the plain and the lifecycle node. Threads: the node's executor calls :meth:`TrackingEngine.init`
and :meth:`TrackingEngine.reset`, a worker thread calls :meth:`TrackingEngine.step`, and a reload thread
builds new models; init and reset never wait for a running track (see :class:`TrackingEngine`). The
IDLE / TRACKING / LOST logic is :class:`~siam_tracking_ros.core.presence.PresenceStateMachine` (one
for every variant).
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from siam_tracking_ros.core.capabilities import GlobalSearch, MaskOutput, ScalableSearch
from siam_tracking_ros.core.presence import LostPolicy, PresenceStateMachine, TargetState
from siam_tracking_ros.core.result import TrackResult

__all__ = ["FrameBuffer", "LatestSlot", "LostPolicy", "ModelRequest", "RateStats", "StepOutcome",
           "StreamMonitor", "TargetState", "ThreadBudget", "TrackingEngine", "build_model", "check_box",
           "config_values", "default_threads"]

#: an init box larger than this many times the image (either side) is refused as absurd
MAX_BOX_TO_IMAGE = 2.0


def default_threads() -> int:
    """Network threads for this machine: half the CPUs this process may use, 1 to 4.

    The other half is left to DDS, the executor and the camera driver: on 2 cores two torch
    threads and the executor fight and the processed rate collapses as the input rate rises.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cpus // 2))


class ThreadBudget:
    """torch / OpenCV thread counts, applied in each thread that runs the network.

    torch reads its intra-op thread count once per thread, so a change is applied by the worker
    itself at its next frame (:meth:`apply`), not by the thread that sets a parameter.
    """

    def __init__(self, threads: int = 0) -> None:
        self.requested = threads
        self.in_worker: int | None = None
        self._local = threading.local()

    @property
    def resolved(self) -> int:
        return self.requested if self.requested > 0 else default_threads()

    def apply(self, worker: bool = False) -> None:
        """Set torch's and OpenCV's thread counts in the calling thread if they changed."""
        threads = self.resolved
        if getattr(self._local, "applied", None) != threads:
            import cv2
            import torch

            torch.set_num_threads(threads)
            cv2.setNumThreads(threads)
            self._local.applied = threads
        if worker:
            import torch

            self.in_worker = torch.get_num_threads()


@dataclass(frozen=True)
class ModelRequest:
    """Which model to run: everything whose change needs a rebuild."""

    tracker: str
    weights: str = ""
    device: str = "auto"
    half: bool = False
    overrides: tuple[tuple[str, Any], ...] = ()
    cuda_graphs: bool = False
    #: inference backend of trackers that offer ``use_backend`` (auto | torch | onnxruntime)
    backend: str = "auto"
    #: inference threads (resolved, >= 1; 0 = library default) passed to ``use_backend``
    threads: int = 0

    def describe(self) -> str:
        weights = self.weights or "packaged default weights"
        flags = (", fp16" if self.half else "") + (", CUDA graphs" if self.cuda_graphs else "")
        flags += f", backend {self.backend}" if self.backend != "auto" else ""
        return f"'{self.tracker}' ({weights}, device {self.device}{flags})"


def build_model(request: ModelRequest):
    """Build a tracker for ``request`` through the registry (raises on any failure).

    Every registered variant is a :class:`~siam_tracking_ros.trackers.base.SiameseTracker`:
    ``half``, ``use_cuda_graphs`` and ``use_backend`` exist on all (no-ops where they do not apply).
    """
    from siam_tracking_ros.trackers import build_tracker

    weights = request.weights or None
    tracker = build_tracker(request.tracker, weights=weights, device=request.device,
                            **dict(request.overrides))
    if request.half:
        tracker.half()
    if request.cuda_graphs:
        tracker.use_cuda_graphs()
    if request.backend != "auto" or request.threads:
        tracker.use_backend(request.backend, request.threads)
    return tracker


@dataclass
class StepOutcome:
    """What one processed frame produced; ``box`` is the box to publish (last confident one if LOST)."""

    state: TargetState
    result: TrackResult | None
    frame_count: int
    frames_since_seen: int
    tracker: str
    box: tuple[float, float, float, float] | None = None


def _finite_box(box: Sequence[float]) -> bool:
    return len(box) == 4 and all(math.isfinite(float(v)) for v in box)


@dataclass(frozen=True)
class _TargetCommand:
    """The tracker side of an :meth:`TrackingEngine.init` (``frame`` and ``box``) or of a
    :meth:`TrackingEngine.reset` (``frame`` None), left for the next holder of the tracker."""

    epoch: int
    frame: np.ndarray | None = None
    box: tuple[float, float, float, float] | None = None


#: (height, width) of the synthetic frame a new model is warmed up on before it is swapped in
WARM_UP_FRAME = (480, 640)


class TrackingEngine:
    """Owns the tracker object and the IDLE / TRACKING / LOST state of the target.

    Two locks, taken in this order. The *tracker lock* is held while the tracker object runs
    (``track`` in :meth:`step`, ``init``, search-region changes, swapping in a reloaded model),
    which can take a while. The *state lock* guards the target state (presence, last box, anchor,
    frame size), the epoch and the pending command, and is held only for bookkeeping, never while
    the tracker runs. :meth:`init`, :meth:`reset` and :meth:`policy_changed` (service and parameter
    callbacks) never wait for the tracker lock: they change the target state at once, bump the
    epoch, and leave the tracker's part as the pending command, which they run themselves when
    the tracker is free and :meth:`step` runs before its next ``track`` otherwise. A ``track``
    that was running meanwhile belongs to an older epoch: its result is dropped (never published
    for the new target, nor after a reset).

    A new model is warmed up before it is swapped in (:meth:`load_now`, in the reload thread): one
    ``init`` and a normal and a LOST-width search on a synthetic frame, so that ONNX exports and
    sessions of every input shape the engine uses (and CUDA graph captures) are made there, not
    inside the first ``init`` or ``track``. ``init`` resets all per-target state, so tracking is
    the same as without the warm-up.
    """

    def __init__(self, policy: LostPolicy | None = None,
                 builder: Callable[[ModelRequest], Any] = build_model,
                 log: Callable[[str, str], None] | None = None, threads: int = 0) -> None:
        self.policy = policy or LostPolicy()
        self.presence = PresenceStateMachine(self.policy)
        self.threads = ThreadBudget(threads)
        self._builder = builder
        self._log = log or (lambda level, text: None)
        self._tracker_lock = threading.RLock()
        self._state_lock = threading.RLock()
        self.tracker: Any = None
        self.loaded: ModelRequest | None = None
        self.load_error: str | None = None
        #: the last confident box (score >= threshold), published while LOST
        self.last_box: tuple[float, float, float, float] | None = None
        self._anchor = -1  # arrival number of the frame the target was set on
        self._frame_size: tuple[int, int] | None = None
        self._wide_search = False  # changed only with the tracker lock held
        #: bumped by every init and reset: a track() begun in an older epoch is dropped
        self._epoch = 0
        self._pending: _TargetCommand | None = None
        self._rescale = False  # lost_search_scale changed: apply it to the tracker
        self._reload = ReloadWorker(self)

    @property
    def state(self) -> TargetState:
        return self.presence.state

    @property
    def frame_count(self) -> int:
        return self.presence.frame_count

    @property
    def frames_since_seen(self) -> int:
        return self.presence.frames_since_seen

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
        """Build, warm up and swap in synchronously (used by the reload thread)."""
        started = time.monotonic()
        self.threads.apply()
        try:
            tracker = self._builder(request)
        except Exception as exc:  # WeightsError, DeviceError, KeyError (unknown variant), ...
            reason = f"cannot load {request.describe()}: {_reason(exc)}"
            self.load_error = reason
            still = f"; still running {self.loaded.describe()}" if self.tracker is not None else ""
            self._log("error", reason + still)
            return False, reason
        self._warm_up(tracker)  # not shared yet: no lock
        with self._tracker_lock:  # waits for a running track() of the old model
            with self._state_lock:
                self.tracker, self.loaded, self.load_error = tracker, request, None
                self._wide_search, self._pending, self._rescale = False, None, False
            message = f"loaded {request.describe()} in {time.monotonic() - started:.1f} s"
            self._log("info", message)
            self._reinit_after_reload(newest_frame)
        return True, message

    def _warm_up(self, tracker: Any) -> None:
        """Run a freshly built ``tracker`` once through the input shapes the engine will give it
        (see the class docs); only where first calls are costly (ONNX Runtime, CUDA)."""
        device = str(getattr(tracker, "device", "cpu"))
        if getattr(tracker, "backend", "torch") != "onnxruntime" and not device.startswith("cuda"):
            return
        height, width = WARM_UP_FRAME
        frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        started = time.monotonic()
        try:
            tracker.init(frame, (width / 2 - 32.0, height / 2 - 32.0, 64.0, 64.0))
            tracker.track(frame)
            if isinstance(tracker, GlobalSearch | ScalableSearch):
                self._search_mode(tracker, True)
                try:
                    tracker.track(frame)
                finally:
                    self._search_mode(tracker, False)
        except Exception as exc:  # the model still runs; its first frames may be slow
            self._log("warn", f"warm-up of the new model failed: {_reason(exc)}")
            return
        finally:
            tracker.reset()
        self._log("info", f"warmed up the new model in {time.monotonic() - started:.1f} s")

    def _reinit_after_reload(self, newest_frame: Callable[[], np.ndarray | None] | None) -> None:
        """Re-initialise the kept target on the new model (tracker lock held)."""
        if self.state == TargetState.IDLE or self.last_box is None:
            return
        frame = newest_frame() if newest_frame else None
        with self._state_lock:
            if self.state == TargetState.IDLE or self.last_box is None:
                return
            if frame is None:
                self._drop_target("no frame to re-initialise the target after the reload")
                return
            from siam_tracking_ros.trackers.base import InvalidBoxError

            try:
                box = check_box(self.last_box, frame.shape)
            except InvalidBoxError as exc:
                self._drop_target(f"cannot re-initialise the target after the reload: invalid box: {exc}")
                return
            epoch = self._set_target(frame, box, self._anchor)
        failure = self._apply_pending(epoch)
        self._log("warn" if failure else "info", f"re-initialised target after reload: "
                                                 f"{failure or self._tracking_message(box)}")

    def unload(self) -> None:
        """Drop the model and the target (lifecycle cleanup)."""
        with self._tracker_lock, self._state_lock:
            self._epoch += 1
            self._pending, self._rescale = None, False
            self._drop_target("")
            self.tracker, self.loaded = None, None

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

    def init(self, frame: np.ndarray, box: Sequence[float], anchor: int = -1) -> tuple[bool, str]:
        """Start tracking ``box`` in ``frame``; ``(success, message)``. Never waits for a running
        :meth:`step`: then the tracker is initialised before the next frame (should its ``init``
        raise there, the target is dropped with a warning; the box itself is checked here).

        ``anchor`` is the arrival number of ``frame``: :meth:`step` skips frames that arrived before it.
        """
        from siam_tracking_ros.trackers.base import InvalidBoxError

        reason = self.unavailable_reason()
        if reason:
            return False, reason
        try:
            checked = check_box(box, frame.shape)
        except InvalidBoxError as exc:
            return False, f"invalid box: {exc}"
        with self._state_lock:
            epoch = self._set_target(frame, checked, anchor)
        message = self._tracking_message(checked)
        if not self._tracker_lock.acquire(blocking=False):
            return True, message + " (the tracker takes it before the next frame)"
        try:
            failure = self._apply_pending(epoch)
        finally:
            self._tracker_lock.release()
        return (False, failure) if failure else (True, message)

    def _tracking_message(self, box: tuple[float, float, float, float]) -> str:
        x, y, w, h = box
        name = self.loaded.tracker if self.loaded else ""
        return f"tracking with '{name}' from box ({x:.1f}, {y:.1f}, {w:.1f}, {h:.1f})"

    def _set_target(self, frame: np.ndarray, box: tuple[float, float, float, float], anchor: int) -> int:
        """The target state of a new target and its pending tracker init (state lock held); its epoch."""
        self._epoch += 1
        self._pending = _TargetCommand(self._epoch, frame, box)
        self.presence.start()
        self.last_box, self._anchor, self._frame_size = box, anchor, frame.shape[:2]
        return self._epoch

    def reset(self) -> tuple[bool, str]:
        """Forget the target (and the frame it was set on). Never waits for a running :meth:`step`."""
        reason = self.unavailable_reason() if self.reloading else None
        if reason:
            return False, reason
        with self._state_lock:
            was = self.state
            self._epoch += 1
            self._pending = _TargetCommand(self._epoch)
            self._clear_target()
            self.last_box = None
        if self._tracker_lock.acquire(blocking=False):
            try:
                self._apply_pending()
            finally:
                self._tracker_lock.release()
        return True, f"target cleared (was {was.name})"

    def _apply_pending(self, epoch: int | None = None) -> str | None:
        """Run the tracker side of the pending command and a changed search scale (tracker lock
        held). Returns why the init of ``epoch`` failed, if that command was run and failed."""
        with self._state_lock:
            command, self._pending = self._pending, None
            rescale, self._rescale = self._rescale, False
        tracker = self.tracker
        if tracker is None:
            return None
        if command is None:
            if rescale and self._wide_search:
                self._apply_search_scale()
            return None
        if command.frame is None:  # reset
            self._set_wide_search(False)
            tracker.reset()
            return None
        self.threads.apply()
        try:
            tracker.init(command.frame, command.box)
        except Exception as exc:
            reason = f"tracker init failed: {_reason(exc)}"
            with self._state_lock:
                if command.epoch == self._epoch:  # not superseded meanwhile: no target
                    self._drop_target("" if command.epoch == epoch else f"{reason}; target dropped")
                    self.last_box = None
            return reason if command.epoch == epoch else None
        self._set_wide_search(False)
        return None

    def _clear_target(self) -> None:
        """No target (state lock held)."""
        self.presence.reset()
        self._anchor, self._frame_size = -1, None

    def _drop_target(self, why: str) -> None:
        """No target, tracker included (both locks held)."""
        if self.tracker is not None:
            self._set_wide_search(False)
            self.tracker.reset()
        self._clear_target()
        if why:
            self._log("warn", why)

    def is_stale(self, arrival: int) -> bool:
        """Whether a frame with this arrival number came before the frame the target was set on."""
        return 0 <= arrival < self._anchor

    def step(self, frame: np.ndarray, arrival: int = -1) -> StepOutcome | None:
        """Track one frame (or report IDLE); None for a frame older than the init frame, and for
        one whose target was re-initialised or reset while it was being tracked."""
        with self._tracker_lock:
            while True:
                self._apply_pending()
                with self._state_lock:
                    if self._pending is not None or self._rescale:
                        continue  # another command came while that one ran
                    if self.is_stale(arrival):
                        return None
                    name = self.loaded.tracker if self.loaded else ""
                    if self.state == TargetState.IDLE or self.tracker is None or not self.tracker.initialized:
                        return StepOutcome(TargetState.IDLE, None, 0, 0, name)
                    epoch, size, last_box = self._epoch, self._frame_size, self.last_box
                    break
            self.threads.apply(worker=True)
            resized = failure = raw = None
            try:
                if frame.shape[:2] != size:
                    resized = self._rescale_target(frame, size, last_box)
                raw = self.tracker.track(frame)
            except Exception as exc:
                failure = exc
            with self._state_lock:
                if epoch != self._epoch:
                    return None  # re-initialised or reset meanwhile: a result for the old target
                if failure is not None:
                    self._drop_target(f"tracking failed, target dropped: {_reason(failure)}")
                    return StepOutcome(TargetState.IDLE, None, 0, 0, name)
                if resized is not None:
                    self._commit_resize(*resized)
                result = self._finite(raw)
                self._update_state(result)
                box = result.box if self.state == TargetState.TRACKING else self.last_box
                return StepOutcome(self.state, result, self.frame_count, self.frames_since_seen, name, box)

    def _finite(self, result: TrackResult) -> TrackResult:
        """``result`` with a non-finite score or box replaced (score 0, the last confident box)."""
        if math.isfinite(float(result.score)) and _finite_box(result.box):
            return result
        self._log("warn", f"tracker returned a non-finite result (box {result.box}, score {result.score}); "
                          "counted as target not seen")
        box = self.last_box if self.last_box is not None else (0.0, 0.0, 0.0, 0.0)
        return dataclasses.replace(result, box=box, score=0.0, polygon=None, mask=None)

    def _rescale_target(self, frame: np.ndarray, size: tuple[int, int],
                        last_box: tuple[float, float, float, float] | None) -> tuple:
        """The image size changed mid-track: re-centre the tracker on the rescaled box, the wide
        search if the aspect ratio changed (tracker lock held; :meth:`_commit_resize` records it)."""
        (old_h, old_w), (height, width) = size, frame.shape[:2]
        sx, sy = width / old_w, height / old_h
        x, y, w, h = last_box or (0.0, 0.0, 1.0, 1.0)
        box = (x * sx, y * sy, w * sx, h * sy)
        self.tracker.init(frame, box)  # re-centred on the rescaled box; raises if it left the image
        same_aspect = abs(sx - sy) <= 0.01 * max(sx, sy)
        if not same_aspect:
            self._set_wide_search(True)
        return box, (old_w, old_h), (width, height), sx, same_aspect

    def _commit_resize(self, box: tuple[float, float, float, float], old: tuple[int, int],
                       new: tuple[int, int], sx: float, same_aspect: bool) -> None:
        """Target state after :meth:`_rescale_target` (state lock held): LOST if the aspect changed."""
        self.last_box, self._frame_size = box, (new[1], new[0])
        change = f"image size changed from {old[0]}x{old[1]} to {new[0]}x{new[1]}"
        if same_aspect:
            self._log("info", f"{change}: target box rescaled by {sx:.3f}")
            return
        self._log("warn", f"{change} (aspect ratio changed): target LOST until it is found again; "
                          "re-initialise it if the view changed")
        self.presence.lose()

    def _update_state(self, result: TrackResult) -> None:
        presence = self.presence
        presence.update(float(result.score))
        if presence.seen:
            self.last_box = tuple(float(v) for v in result.box)  # type: ignore[assignment]
        if presence.just_lost:
            self._set_wide_search(True)
            self._log("info", f"target lost: score below {self.policy.score_threshold} for "
                              f"{presence.frames_since_seen} frames; searching")
        elif presence.just_found:
            self._set_wide_search(False)
            self._log("info", f"target found again (score {result.score:.2f})")

    def policy_changed(self) -> None:
        """Apply a changed ``lost_search_scale`` while searching: at once if the tracker is free,
        else before the next frame (a parameter callback never waits for a running track).

        A scale not seen before makes a new input shape: on ONNX Runtime its export then runs in
        the worker at the next wide search (frames are dropped meanwhile; services keep answering).
        """
        with self._state_lock:
            self._rescale = True
        if self._tracker_lock.acquire(blocking=False):
            try:
                self._apply_pending()
            finally:
                self._tracker_lock.release()

    def _set_wide_search(self, enabled: bool) -> None:
        """While LOST: global search where the tracker offers it, and a wider search scale
        (tracker lock held)."""
        if enabled == self._wide_search or self.tracker is None:
            return
        self._wide_search = enabled
        self._search_mode(self.tracker, enabled)

    def _search_mode(self, tracker: Any, wide: bool) -> None:
        if isinstance(tracker, GlobalSearch):
            # back to the configured mode (a variant may run long-term search all the time)
            tracker.enable_global_search(wide or tracker.global_search_configured)
        if isinstance(tracker, ScalableSearch):
            tracker.set_search_scale(self.policy.lost_search_scale if wide else 1.0)

    def _apply_search_scale(self) -> None:
        if isinstance(self.tracker, ScalableSearch):
            self.tracker.set_search_scale(self.policy.lost_search_scale if self._wide_search else 1.0)

    @property
    def produces_mask(self) -> bool:
        return isinstance(self.tracker, MaskOutput)


def check_box(box: Sequence[float], frame_shape: Sequence[int]) -> tuple[float, float, float, float]:
    """An init box as floats; raises ``InvalidBoxError`` for a non-finite, empty, outside or absurd one."""
    from siam_tracking_ros.trackers.base import InvalidBoxError, validate_init_box

    x, y, w, h = validate_init_box(box, frame_shape)
    height, width = frame_shape[:2]
    if w > MAX_BOX_TO_IMAGE * width or h > MAX_BOX_TO_IMAGE * height:
        raise InvalidBoxError(f"box {w:g}x{h:g} is more than {MAX_BOX_TO_IMAGE:g} times the "
                              f"{width}x{height} image")
    return x, y, w, h


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


class StreamMonitor:
    """Arrival order, stamp jumps and transport losses of one image stream (thread-safe).

    Frames are numbered by arrival: "older than the init frame" means "arrived before it", so a
    stamp that jumps back (a bag played with ``--loop``, a simulator clock reset, a camera driver
    restart) or zero stamps never silence the node. Gaps in the DDS publication sequence numbers
    of a publisher count as frames lost on the way (transport, or a full subscription queue).
    """

    def __init__(self, window_s: float = 5.0, max_publishers: int = 64) -> None:
        self._lock = threading.Lock()
        self.received = 0
        self.stamp_jumps = 0
        self.zero_stamps = 0
        self.missed = 0
        self._last_stamp: int | None = None
        self._publishers: OrderedDict[bytes, int] = OrderedDict()
        self._max_publishers = max_publishers
        self._window_s = window_s
        self._recent: deque[tuple[float, int]] = deque()

    def receive(self, stamp_ns: int, publisher: bytes | None = None, sequence: int | None = None,
                now: float | None = None) -> tuple[int, str | None]:
        """Count one frame; ``(arrival number, warning to log or None)``."""
        now = time.monotonic() if now is None else now
        with self._lock:
            arrival = self.received
            self.received += 1
            warning = self._check_stamp(stamp_ns)
            gap = self._check_sequence(publisher, sequence)
            self._recent.append((now, gap))
            while self._recent and self._recent[0][0] < now - self._window_s:
                self._recent.popleft()
        return arrival, warning

    def _check_stamp(self, stamp_ns: int) -> str | None:
        if stamp_ns == 0:
            self.zero_stamps += 1
            if self.zero_stamps == 1:
                return ("images arrive with zero stamps: frames are ordered by arrival, init_target "
                        "cannot name a stamp, latency is measured from reception")
            return None
        last, self._last_stamp = self._last_stamp, stamp_ns
        if last is None or stamp_ns >= last:
            return None
        self.stamp_jumps += 1
        return (f"image stamps jumped back by {(last - stamp_ns) / 1e9:.3f} s (bag loop, clock reset "
                f"or camera restart?): continuing with the new stamps")

    def _check_sequence(self, publisher: bytes | None, sequence: int | None) -> int:
        if publisher is None or sequence is None:
            return 0
        last = self._publishers.pop(publisher, None)
        self._publishers[publisher] = sequence
        if len(self._publishers) > self._max_publishers:
            self._publishers.popitem(last=False)
        if last is None or sequence <= last:  # a new or restarted publisher
            return 0
        gap = sequence - last - 1
        self.missed += gap
        return gap

    def recent_loss(self, now: float | None = None) -> tuple[int, int]:
        """``(missed, sent)`` frames over the last ``window_s`` seconds."""
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = [gap for t, gap in self._recent if t >= now - self._window_s]
        missed = sum(recent)
        return missed, missed + len(recent)


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
