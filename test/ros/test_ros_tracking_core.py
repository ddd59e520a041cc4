"""ROS-free parts of the node: newest-frame slot, frame buffer, state machine, reloads, parameters."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from rclpy.parameter import Parameter

from siam_tracking_ros.core.capabilities import ScalableSearch
from siam_tracking_ros.ros import params as P
from siam_tracking_ros.ros.tracking_core import (
    FrameBuffer,
    LatestSlot,
    LostPolicy,
    ModelRequest,
    TargetState,
    TrackingEngine,
)


def test_latest_slot_keeps_only_the_newest() -> None:
    slot = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True and slot.put(3) is True
    assert slot.dropped == 2
    assert slot.take(0.01) == 3
    assert slot.take(0.01) is None


def test_latest_slot_wakes_a_waiting_consumer() -> None:
    slot = LatestSlot()
    got: list = []
    consumer = threading.Thread(target=lambda: got.append(slot.take(5.0)))
    consumer.start()
    slot.put("frame")
    consumer.join(5.0)
    assert got == ["frame"]


def test_frame_buffer_is_bounded_and_finds_stamps() -> None:
    buffer = FrameBuffer(3)
    for stamp in (10, 20, 30, 40):
        buffer.push(stamp, f"f{stamp}")
    assert buffer.find(10) is None and buffer.find(30) == "f30"
    assert buffer.newest() == (40, "f40") and buffer.stamp_range() == (20, 40)


def test_tracker_params_follow_the_config_dataclass() -> None:
    from siam_tracking_ros.trackers import make_config

    config = make_config("nanotrack")
    declared = {p.field: p.value for p in P.tracker_params(config)}
    assert declared["version"] == "v2" and declared["context_amount"] == 0.5
    assert declared["penalty_k"] == Parameter.Type.DOUBLE  # optional, unset: typed, no value
    assert P.overrides_from({"penalty_k": None, "context_amount": 0.5, "min_size": 12}, config) == (
        ("min_size", 12.0),)


def test_presence_parameters_default_to_the_policy_defaults() -> None:
    from dataclasses import fields

    policy = LostPolicy()
    for field in fields(LostPolicy):
        assert P.NODE_PARAM_NAMES[field.name].default == getattr(policy, field.name), field.name


def test_node_param_validation_reasons() -> None:
    assert "must be in" in P.validate_node_param("score_threshold", 2.0)
    assert "unknown tracker" in P.validate_node_param("tracker", "nope")
    assert "not found" in P.validate_node_param("weights", "/no/file.pth")
    assert P.validate_node_param("weights", "random") is None
    assert "auto, cpu, cuda" in P.validate_node_param("device", "gpu0")
    assert P.validate_node_param("device", "cpu") is None


@pytest.fixture(scope="module")
def frames(crossing):
    return [crossing.frame(i) for i in range(8)], crossing.boxes


def test_lost_state_switches_global_search_and_back(frames) -> None:
    """SiamRPN++ (AlexNet backbone, untrained) offers enable_global_search: used only while LOST."""
    images, boxes = frames
    engine = TrackingEngine(LostPolicy(score_threshold=1.01, lost_frames=2, found_frames=1))
    small = (("backbone", "alexnet"), ("lost_instance_size", 351))  # keeps the global search cheap
    ok, message = engine.load_now(ModelRequest("siamrpnpp", "random", "cpu", overrides=small))
    assert ok, message
    assert engine.init(images[0], boxes[0])[0]
    states = [engine.step(images[i]).state for i in (1, 2, 3)]
    assert states == [TargetState.TRACKING, TargetState.LOST, TargetState.LOST]
    assert engine.tracker.long_term is True
    engine.policy.score_threshold = -1.0  # every score counts as seen
    engine.policy.found_threshold = -1.0
    outcome = engine.step(images[4])
    assert outcome.state == TargetState.TRACKING and outcome.frames_since_seen == 0
    assert engine.tracker.long_term is False  # back to the configured mode


def test_lost_without_a_global_mode_keeps_tracking(frames) -> None:
    """SiamMask has enable_global_search but no long-term mode: LOST must not break the engine."""
    images, boxes = frames
    engine = TrackingEngine(LostPolicy(score_threshold=1.01, lost_frames=1))
    assert engine.load_now(ModelRequest("siammask", "random", "cpu"))[0]
    assert engine.init(images[0], boxes[0])[0]
    states = [engine.step(images[i]).state for i in (1, 2)]
    assert states == [TargetState.LOST, TargetState.LOST]
    assert engine.tracker.initialized


def test_failed_reload_keeps_the_model_and_reset_clears(frames, tmp_path) -> None:
    images, boxes = frames
    engine = TrackingEngine()
    assert engine.load_now(ModelRequest("siamfc", "random", "cpu"))[0]
    running = engine.tracker
    assert engine.init(images[0], boxes[0])[0]
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"\x00" * 64)
    ok, reason = engine.load_now(ModelRequest("siamfc", str(broken), "cpu"))
    assert not ok and "refused to load" in reason and engine.tracker is running
    assert engine.step(images[1]).state == TargetState.TRACKING
    assert engine.reset()[0] and engine.step(images[2]).state == TargetState.IDLE
    ok, reason = engine.init(images[0], (float("nan"), 1, 2, 3))
    assert not ok and reason.startswith("invalid box")


def test_background_reload_reinitialises_from_last_box(frames) -> None:
    images, boxes = frames
    engine = TrackingEngine()
    assert engine.load_now(ModelRequest("siamfc", "random", "cpu"))[0]
    assert engine.init(images[0], boxes[0])[0]
    engine.step(images[1])
    done: list = []
    engine.request_model(ModelRequest("siamfc", "random", "cpu", overrides=(("scale_num", 5),)),
                         lambda: images[2], lambda ok, message: done.append(ok))
    assert engine.wait_idle(60.0) and done == [True]
    assert engine.tracker.config.scale_num == 5
    assert engine.state == TargetState.TRACKING and engine.frame_count == 0


def test_cuda_graphs_request_builds_a_graph_ready_tracker_that_tracks_on_cpu(frames) -> None:
    images, boxes = frames
    engine = TrackingEngine()
    request = ModelRequest("nanotrack", "", "cpu", cuda_graphs=True)
    assert "CUDA graphs" in request.describe()
    assert engine.load_now(request)[0]
    assert engine.tracker.search_pass.enabled  # on CPU the pass runs eagerly: nothing captured
    assert engine.init(images[0], boxes[0])[0]
    assert engine.step(images[1]).state == TargetState.TRACKING
    assert engine.tracker.search_pass.captured == 0


# --- issue 15: stream order, resolution changes, non-finite values, threads ----------------------
def test_stream_monitor_orders_by_arrival_and_reports_jumps_zero_stamps_and_gaps() -> None:
    from siam_tracking_ros.ros.tracking_core import StreamMonitor

    stream = StreamMonitor(window_s=10.0)
    arrivals = [stream.receive(stamp, b"pub", seq, now=1.0) for stamp, seq in
                [(5_000, 1), (6_000, 2), (1_000, 3), (0, 4), (0, 7), (2_000, 8)]]
    assert [a for a, _ in arrivals] == [0, 1, 2, 3, 4, 5]
    warnings = [w for _, w in arrivals]
    assert warnings[0] is None and warnings[1] is None
    assert "jumped back by 0.000 s" in warnings[2]
    assert "zero stamps" in warnings[3] and warnings[4] is None  # warned once
    assert stream.stamp_jumps == 1 and stream.zero_stamps == 2
    assert stream.missed == 2 and stream.recent_loss(now=1.0) == (2, 8)
    stream.receive(3_000, b"pub", 1, now=2.0)  # a restarted publisher is not a gap
    stream.receive(4_000, b"other", 50, now=2.0)  # nor is a new one
    assert stream.missed == 2 and stream.recent_loss(now=20.0) == (0, 0)


def tracking_engine(weights: str, **policy) -> TrackingEngine:
    engine = TrackingEngine(LostPolicy(**policy))
    ok, message = engine.load_now(ModelRequest("nanotrack", weights, "cpu", overrides=(("version", "v2"),)))
    assert ok, message
    return engine


def test_frames_that_arrived_before_the_init_frame_are_skipped_until_reset(frames, nanotrack_weights) -> None:
    images, boxes = frames
    engine = tracking_engine(str(nanotrack_weights))
    assert engine.init(images[0], boxes[0], anchor=10)[0]
    assert engine.step(images[1], arrival=9) is None  # came before the init frame
    assert engine.step(images[1], arrival=11).state == TargetState.TRACKING
    assert engine.step(images[2]).state == TargetState.TRACKING  # no arrival number: not gated
    assert engine.reset()[0]
    assert engine.step(images[3], arrival=9).state == TargetState.IDLE  # reset clears the anchor


def test_resolution_change_rescales_or_goes_lost(frames, nanotrack_weights) -> None:
    import cv2

    from siam_tracking_ros.core.geometry import iou_xywh

    images, boxes = frames
    engine = tracking_engine(str(nanotrack_weights))
    assert engine.init(images[0], boxes[0])[0]
    for i in (1, 2):
        engine.step(images[i])
    bigger = cv2.resize(images[3], None, fx=2.0, fy=2.0)
    outcome = engine.step(bigger)
    assert outcome.state == TargetState.TRACKING and outcome.result.score > 0.5
    assert iou_xywh(np.asarray(outcome.box), np.asarray(boxes[3]) * 2.0) > 0.5  # new coordinates
    squeezed = cv2.resize(images[4], (360, 360))  # the aspect ratio changed
    assert engine.step(squeezed).state == TargetState.LOST


def test_non_finite_tracker_output_never_leaves_the_engine(frames, nanotrack_weights) -> None:
    import math

    from siam_tracking_ros.core.result import TrackResult

    images, boxes = frames
    engine = tracking_engine(str(nanotrack_weights), lost_frames=2)
    ok, message = engine.init(images[0], (0.0, 0.0, 3.4e38, 3.4e38))
    assert not ok and message.startswith("invalid box") and "times the" in message
    assert engine.init(images[0], boxes[0])[0]
    engine.tracker.track = lambda frame: TrackResult((math.nan, 1.0, math.inf, 2.0), math.nan)
    outcomes = [engine.step(images[i]) for i in (1, 2)]
    for outcome in outcomes:
        assert outcome.result.score == 0.0 and all(math.isfinite(v) for v in outcome.result.box)
        assert outcome.box == tuple(float(v) for v in boxes[0])
    assert outcomes[-1].state == TargetState.LOST


def test_thread_budget_is_applied_in_the_tracking_thread(frames, nanotrack_weights) -> None:
    from siam_tracking_ros.ros.tracking_core import default_threads

    images, boxes = frames
    engine = tracking_engine(str(nanotrack_weights))
    assert engine.threads.resolved == default_threads() >= 1
    assert engine.init(images[0], boxes[0])[0]
    engine.threads.requested = 1
    seen: list = []
    worker = threading.Thread(target=lambda: (engine.step(images[1]), seen.append(engine.threads.in_worker)))
    worker.start()
    worker.join(60.0)
    assert seen == [1]


def test_search_scale_widens_while_lost_and_follows_the_parameter(frames, nanotrack_weights) -> None:
    images, boxes = frames
    engine = tracking_engine(str(nanotrack_weights), score_threshold=1.01, lost_frames=1, found_frames=1,
                             lost_search_scale=2.0)
    assert engine.init(images[0], boxes[0])[0]
    assert engine.tracker.search_scale == 1.0
    assert engine.step(images[1]).state == TargetState.LOST
    assert engine.tracker.search_scale == 2.0
    engine.policy.lost_search_scale = 3.0
    engine.policy_changed()
    assert engine.tracker.search_scale == 3.0
    engine.policy.score_threshold = 0.0
    engine.policy.found_threshold = 0.0
    assert engine.step(images[2]).state == TargetState.TRACKING
    assert engine.tracker.search_scale == 1.0


class _ScriptedTracker:
    """A tracker with a fixed score that records the search calls it gets."""

    def __init__(self, score: float) -> None:
        from types import SimpleNamespace

        self.score, self.calls, self.initialized = score, [], False
        self.config = SimpleNamespace(long_term=True)  # read only through the capability

    def init(self, frame, box) -> None:
        self.initialized, self.box = True, tuple(box)

    def track(self, frame):
        from siam_tracking_ros.core.result import TrackResult

        return TrackResult(self.box, self.score)

    def reset(self) -> None:
        self.initialized = False

    # same names as the capabilities, but declared only where the class inherits them
    def enable_global_search(self, flag: bool = True) -> None:
        self.calls.append(("global", flag))

    def set_search_scale(self, scale: float) -> None:
        self.calls.append(("scale", scale))


def test_capabilities_are_checked_by_type_not_by_method_name(frames) -> None:
    """Only a tracker that declares GlobalSearch / ScalableSearch is switched while LOST (issue 11)."""
    from siam_tracking_ros.core.capabilities import GlobalSearch, ScalableSearch

    class Declared(_ScriptedTracker, GlobalSearch, ScalableSearch):
        pass

    images, boxes = frames
    for cls, expected in [(_ScriptedTracker, []),
                          (Declared, [("global", True), ("scale", 2.0), ("global", False), ("scale", 1.0)])]:
        engine = TrackingEngine(LostPolicy(score_threshold=0.5, lost_frames=1, found_frames=1,
                                           lost_search_scale=2.0),
                                builder=lambda request, cls=cls: cls(0.1))
        assert engine.load_now(ModelRequest("scripted"))[0]
        assert engine.init(images[0], boxes[0])[0]
        tracker = engine.tracker
        tracker.calls.clear()
        assert engine.step(images[1]).state == TargetState.LOST
        tracker.score = 0.9
        assert engine.step(images[2]).state == TargetState.TRACKING
        assert tracker.calls == expected, cls
        assert not engine.produces_mask


def test_global_search_returns_to_the_configured_mode(frames) -> None:
    """A DaSiamRPN configured for long-term search keeps it after the target is found again."""
    images, boxes = frames
    engine = TrackingEngine(LostPolicy(score_threshold=1.01, lost_frames=1, found_frames=1))
    small = (("long_term", True), ("width_mult", 0.25), ("hidden", 16), ("max_instance_size", 399))
    assert engine.load_now(ModelRequest("dasiamrpn", "random", "cpu", overrides=small))[0]
    assert engine.tracker.global_search_configured
    assert engine.init(images[0], boxes[0])[0]
    assert engine.step(images[1]).state == TargetState.LOST and engine.tracker.long_term
    engine.policy.score_threshold = -1.0
    engine.policy.found_threshold = -1.0
    assert engine.step(images[2]).state == TargetState.TRACKING
    assert engine.tracker.long_term is True


# --- issue 15: init / reset / parameter changes never wait for a running track -------------------
class _HeldTracker(_ScriptedTracker, ScalableSearch):
    """A scripted tracker whose ``track`` can be held on an event; it records its inits."""

    def __init__(self) -> None:
        super().__init__(0.9)
        self.gate, self.entered, self.released = threading.Event(), threading.Event(), threading.Event()
        self.gate.set()
        self.inits: list = []

    def init(self, frame, box) -> None:
        super().init(frame, box)
        self.inits.append(tuple(box))

    def track(self, frame):
        self.entered.set()
        self.gate.wait(30.0)  # a bound only: a broken engine fails the asserts instead of hanging
        self.released.set()
        return super().track(frame)

    def hold(self) -> None:
        self.entered.clear()
        self.released.clear()
        self.gate.clear()


def test_init_reset_and_scale_changes_never_wait_for_a_running_track(frames) -> None:
    images, boxes = frames
    box1 = tuple(float(v) for v in boxes[1])
    engine = TrackingEngine(LostPolicy(score_threshold=0.5, lost_frames=1, found_frames=1,
                                       lost_search_scale=2.0),
                            builder=lambda request: _HeldTracker())
    assert engine.load_now(ModelRequest("held"))[0]
    tracker = engine.tracker
    assert engine.init(images[0], boxes[0])[0]
    tracker.hold()
    held: list = []
    worker = threading.Thread(target=lambda: held.append(engine.step(images[1], arrival=1)))
    worker.start()
    try:
        assert tracker.entered.wait(30.0)
        ok, message = engine.reset()
        assert not tracker.released.is_set(), "reset waited for the running track()"
        assert ok and "was TRACKING" in message and engine.state == TargetState.IDLE
        ok, message = engine.init(images[1], boxes[1], anchor=1)
        assert not tracker.released.is_set(), "init waited for the running track()"
        assert ok, message
        assert engine.state == TargetState.TRACKING and engine.last_box == box1
    finally:
        tracker.gate.set()
        worker.join(30.0)
    assert held == [None]  # the held frame was tracked for the cleared target: its result is dropped
    assert tracker.inits[-1] != box1  # the tracker is initialised by the next holder of the tracker
    outcome = engine.step(images[2], arrival=2)
    assert tracker.inits[-1] == box1
    assert outcome.state == TargetState.TRACKING and outcome.frame_count == 1 and outcome.box == box1
    assert engine.step(images[2], arrival=0) is None  # arrived before the new init frame

    tracker.score = 0.1
    assert engine.step(images[3], arrival=3).state == TargetState.LOST
    assert tracker.calls[-1] == ("scale", 2.0)
    tracker.hold()
    worker = threading.Thread(target=lambda: engine.step(images[4], arrival=4))
    worker.start()
    try:
        assert tracker.entered.wait(30.0)
        engine.policy.lost_search_scale = 3.0
        engine.policy_changed()
        assert not tracker.released.is_set(), "policy_changed waited for the running track()"
        assert tracker.calls[-1] == ("scale", 2.0)  # not under the running track
    finally:
        tracker.gate.set()
        worker.join(30.0)
    engine.step(images[5], arrival=5)
    assert tracker.calls[-1] == ("scale", 3.0)  # applied before the next track


def test_a_new_model_is_warmed_up_before_it_is_swapped_in(frames, nanotrack_weights, tmp_path,
                                                          monkeypatch) -> None:
    """Every ONNX export and session (template, search, LOST-width search) is made in the reload
    thread before the model is swapped in: none inside init() or track(), which hold the tracker."""
    from siam_tracking_ros.backends import ort

    monkeypatch.setenv("SIAM_ONNX_CACHE", str(tmp_path))  # a fresh cache: every shape is exported
    exports: list = []
    export_pass = ort.export_pass

    def counted(*args, **kwargs):
        exports.append(threading.current_thread().name)
        return export_pass(*args, **kwargs)

    monkeypatch.setattr(ort, "export_pass", counted)
    images, boxes = frames
    engine = TrackingEngine(LostPolicy(score_threshold=0.3, lost_frames=1, found_frames=1,
                                       lost_search_scale=2.0))
    done: list = []
    engine.request_model(ModelRequest("nanotrack", str(nanotrack_weights), "cpu",
                                      overrides=(("version", "v2"),), threads=1),
                         done=lambda ok, message: done.append((ok, message)))
    assert engine.wait_idle(300.0) and done and done[0][0], done
    tracker = engine.tracker
    assert tracker.backend == "onnxruntime"
    assert exports == ["model-reload"] * 3  # template, search at 255 and at 511 px (scale 2)
    made = (tracker.template_pass.sessions, tracker.search_pass.sessions)
    assert made == (1, 2)
    assert engine.init(images[0], boxes[0])[0]
    states = [engine.step(images[i]).state for i in (1, 2)]
    engine.policy.score_threshold = 1.01  # nothing counts as seen: LOST, wide search
    states += [engine.step(images[i]).state for i in (3, 4)]
    assert tracker.search_scale == 2.0
    engine.policy.score_threshold = 0.0
    engine.policy.found_threshold = 0.0
    states += [engine.step(images[5]).state]
    assert states == [TargetState.TRACKING] * 2 + [TargetState.LOST] * 2 + [TargetState.TRACKING]
    assert exports == ["model-reload"] * 3
    assert (tracker.template_pass.sessions, tracker.search_pass.sessions) == made


def test_the_warm_up_leaves_tracking_unchanged(frames, nanotrack_weights) -> None:
    """The warmed-up tracker gives bit-identical boxes and scores to one never warmed up, at the
    normal and the wide search."""
    from siam_tracking_ros.ros.tracking_core import build_model

    images, boxes = frames
    request = ModelRequest("nanotrack", str(nanotrack_weights), "cpu", overrides=(("version", "v2"),),
                           threads=1)
    engine = TrackingEngine()
    assert engine.load_now(request)[0]
    warmed, plain = engine.tracker, build_model(request)
    for tracker in (warmed, plain):
        tracker.init(images[0], boxes[0])
    for index, scale in [(1, 1.0), (2, 1.0), (3, 2.0), (4, 2.0), (5, 1.0), (6, 1.0), (7, 1.0)]:
        results = []
        for tracker in (warmed, plain):
            tracker.set_search_scale(scale)
            results.append(tracker.track(images[index]))
        assert results[0].box == results[1].box and results[0].score == results[1].score, index
