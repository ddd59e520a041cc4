"""The tracker node in-process over real DDS, with the real NanoTrack weights and a real sequence.

One node serves the whole module (loading a model costs time); each test puts it in the state it
needs (reset / init) first.
"""

from __future__ import annotations

import dataclasses
import math
import threading

import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from siam_ros_testing import Probe, Spinner, iou, wait_for
from siam_tracking_ros.msg import TrackedObject

pytestmark = [pytest.mark.ros, pytest.mark.shared_data]

LOST_FRAMES = 3
NODE_NAME = "tracker_node"


@pytest.fixture(scope="module")
def setup(ros_session, nanotrack_weights, crossing):
    from siam_tracking_ros.ros.tracker_node import TrackerNode

    node = TrackerNode(NODE_NAME, parameter_overrides=[
        Parameter("weights", value=str(nanotrack_weights)), Parameter("device", value="cpu"),
        Parameter("tracker_params.version", value="v2"), Parameter("score_threshold", value=0.3),
        Parameter("lost_frames", value=LOST_FRAMES), Parameter("image_reliability", value="reliable"),
        Parameter("diagnostics_period", value=0.2)])
    probe = Probe(f"/{NODE_NAME}")
    spinner = Spinner(node, probe)
    probe.wait_subscribers()
    assert node.runtime.engine.wait_idle(60.0)
    assert node.runtime.engine.tracker is not None, node.runtime.engine.load_error
    frames = [crossing.frame(i) for i in range(60)]
    yield node, probe, frames, crossing.boxes
    spinner.stop()
    node.destroy_node()
    probe.destroy_node()


def start_tracking(probe: Probe, frames, boxes, first: int = 0) -> None:
    probe.new_run()
    probe.reset()
    probe.send_and_wait(frames[first], first)
    response = probe.init_target(boxes[first], index=first)
    assert response.success, response.message


def box_of(msg: TrackedObject) -> tuple[float, float, float, float]:
    return (msg.x, msg.y, msg.width, msg.height)


def occlude(frame: np.ndarray, box, seed: int) -> np.ndarray:
    """The frame with a wide region around the target replaced by noise (target gone)."""
    x, y, w, h = (int(v) for v in box)
    margin = max(w, h)
    out = frame.copy()
    region = out[max(0, y - margin):y + h + margin, max(0, x - margin):x + w + margin]
    region[:] = np.random.default_rng(seed).integers(0, 256, region.shape, dtype=np.uint8)
    return out


def test_idle_then_tracks_with_iou_then_lost_and_found(setup) -> None:
    _, probe, frames, boxes = setup
    probe.new_run()
    probe.reset()
    idle = probe.send_and_wait(frames[0], 0)
    assert idle.state == TrackedObject.IDLE
    assert (idle.header.frame_id, idle.image_width, idle.image_height) == ("camera", 360, 240)

    response = probe.init_target(boxes[0], index=0)
    assert response.success, response.message
    overlaps, states = [], []
    for index in range(1, 40):
        msg = probe.send_and_wait(frames[index], index)
        overlaps.append(iou(box_of(msg), boxes[index]))
        states.append(msg.state)
    assert states == [TrackedObject.TRACKING] * len(states)
    assert np.mean(overlaps) > 0.5, overlaps
    assert msg.frame_count >= 39 and msg.frames_since_seen == 0 and msg.score > 0.5

    lost = [probe.send_and_wait(occlude(frames[i], boxes[i], i), i) for i in range(40, 40 + LOST_FRAMES)]
    # not lost before lost_frames low-score frames, LOST at the last of them
    assert [m.state for m in lost] == [TrackedObject.TRACKING] * (LOST_FRAMES - 1) + [TrackedObject.LOST]
    assert lost[-1].frames_since_seen == LOST_FRAMES
    assert all(m.score < 0.3 for m in lost)
    assert box_of(lost[-1]) == box_of(msg)  # while LOST: the last confident box

    back = [probe.send_and_wait(frames[i], i) for i in range(40 + LOST_FRAMES, 60)]
    assert back[-1].state == TrackedObject.TRACKING
    assert back[-1].frames_since_seen == 0
    assert iou(box_of(back[-1]), boxes[59]) > 0.3


def test_init_with_buffered_stamp_and_errors(setup) -> None:
    _, probe, frames, boxes = setup
    probe.new_run()
    probe.reset()
    for index in range(0, 5):
        probe.send_and_wait(frames[index], index)
    older = probe.init_target(boxes[2], index=2)
    assert older.success, older.message
    missing = probe.init_target(boxes[2], index=500)
    assert not missing.success and "no buffered frame" in missing.message
    for bad in [(math.nan, 10, 20, 20), (10, 10, 0, 20), (10, 10, -5, 20), (5000, 5000, 20, 20)]:
        answer = probe.init_target(bad)
        assert not answer.success and answer.message.startswith("invalid box"), (bad, answer.message)
    # the node still tracks after the refusals
    msg = probe.send_and_wait(frames[5], 5)
    assert msg.state == TrackedObject.TRACKING


def test_init_box_topic_and_reset(setup) -> None:
    from sensor_msgs.msg import RegionOfInterest

    node, probe, frames, boxes = setup
    probe.new_run()
    probe.reset()
    probe.send_and_wait(frames[0], 0)
    publisher = probe.create_publisher(RegionOfInterest, f"/{NODE_NAME}/init_box", 10)
    assert wait_for(lambda: publisher.get_subscription_count() > 0)
    x, y, w, h = (int(v) for v in boxes[0])
    publisher.publish(RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h))
    assert wait_for(lambda: node.runtime.engine.state == TrackedObject.TRACKING)
    assert probe.send_and_wait(frames[1], 1).state == TrackedObject.TRACKING
    answer = probe.reset()
    assert answer.success and "TRACKING" in answer.message
    assert probe.send_and_wait(frames[2], 2).state == TrackedObject.IDLE
    probe.destroy_publisher(publisher)


def test_bad_images_are_skipped_and_node_keeps_serving(setup) -> None:
    import array

    from sensor_msgs.msg import Image

    node, probe, frames, boxes = setup
    start_tracking(probe, frames, boxes)
    before = node.runtime.bad_frames

    def raw(encoding: str, height: int, width: int, step: int, size: int, index: int) -> Image:
        msg = Image(encoding=encoding, height=height, width=width, step=step)
        msg.data = array.array("B", bytes(size))
        msg.header.stamp = probe.stamp_of(index)
        return msg

    bad = [raw("bayer_rggb8", 240, 360, 360, 240 * 360, 1), raw("bgr8", 240, 360, 1080, 1000, 2),
           raw("bgr8", 0, 0, 0, 0, 3)]
    # one at a time: the newest-frame mailbox may rightly drop a bad frame that a newer one overtakes
    for count, msg in enumerate(bad, start=1):
        probe.image_pub.publish(msg)
        assert wait_for(lambda n=before + count: node.runtime.bad_frames >= n), msg.encoding
    assert not any(probe.objects_for(i) for i in (1, 2, 3))
    msg = probe.send_and_wait(frames[4], 4)
    assert msg.state == TrackedObject.TRACKING
    # a bad frame named by stamp gives a clear answer
    answer = probe.init_target(boxes[0], index=2)
    assert not answer.success and "cannot be used" in answer.message


def newest_received_stamp(node) -> int | None:
    newest = node.runtime.buffer.newest()
    return None if newest is None else newest[0]


def test_fast_publisher_processes_only_newest_frames(setup) -> None:
    from siam_tracking_ros.ros.node_core import stamp_ns

    node, probe, frames, boxes = setup
    runtime = node.runtime
    start_tracking(probe, frames, boxes)
    dropped_before = runtime.slot.dropped
    sent = list(range(1, 60))
    # hold the engine inside track() on an event while every frame arrives: the worker can take at
    # most one frame meanwhile, so the others are dropped whatever the machine load
    tracker, gate = runtime.engine.tracker, threading.Event()
    track = tracker.track

    def held_track(frame):
        assert gate.wait(60.0), "the test never released the engine"
        return track(frame)

    tracker.track = held_track
    try:
        for index in sent:  # each one received by the node before the next is sent: none lost by DDS
            probe.publish_frame(frames[index], index)
            stamp = stamp_ns(probe.stamp_of(index))
            assert wait_for(lambda s=stamp: newest_received_stamp(node) == s), f"frame {index} not received"
        # all in the slot: each replaced the one before, except the frame the worker may hold
        assert wait_for(lambda: runtime.slot.dropped - dropped_before >= len(sent) - 2)
    finally:
        gate.set()
        del tracker.track
    assert wait_for(lambda: bool(probe.objects_for(sent[-1])), 30.0), "newest frame never processed"
    processed = [i for i in sent if probe.objects_for(i)]
    stamps = [(o.header.stamp.sec, o.header.stamp.nanosec) for i in processed for o in probe.objects_for(i)]
    assert stamps == sorted(set(stamps)), "a frame was processed twice or out of order"
    dropped = runtime.slot.dropped - dropped_before
    assert len(processed) + dropped == len(sent), (processed, dropped)  # every frame processed or dropped
    assert 1 <= len(processed) <= 2 and processed[-1] == sent[-1], processed
    assert probe.objects_for(sent[-1])[-1].dropped_frames == runtime.slot.dropped


def test_diagnostics_report_rates_and_model(setup) -> None:
    _, probe, frames, boxes = setup
    start_tracking(probe, frames, boxes)
    for index in range(1, 10):
        probe.send_and_wait(frames[index], index)
    probe.diagnostics.clear()
    assert wait_for(lambda: probe.latest_diagnostics().get("state") == "TRACKING", 10.0)
    values = probe.latest_diagnostics()
    assert values["variant"] == "nanotrack" and values["device"] == "cpu"
    assert float(values["fps"]) > 0 and float(values["latency_p95_ms"]) >= float(values["latency_p50_ms"]) > 0
    assert int(values["processed_frames"]) > 0 and "dropped_frames" in values
    assert values["reloading"] == "false" and values["_message"] == "TRACKING"


def set_params(probe: Probe, **values):
    client = AsyncParameterClient(probe, NODE_NAME)
    assert client.wait_for_services(timeout_sec=20.0)
    future = client.set_parameters([Parameter(k.replace("__", "."), value=v) for k, v in values.items()])
    assert wait_for(future.done, 30.0)
    return future.result().results


def test_parameter_validation(setup) -> None:
    import torch

    node, probe, _, _ = setup
    cases = {"score_threshold": 1.5, "found_threshold": -0.1, "lost_frames": 0, "tracker": "no_such_tracker",
             "weights": "/no/such/file.pth", "device": "tpu", "image_transport": "compressed"}
    for name, value in cases.items():
        [result] = set_params(probe, **{name: value})
        assert not result.successful and result.reason, name
    [unknown] = set_params(probe, tracker="no_such_tracker")
    assert "unknown tracker" in unknown.reason and "nanotrack" in unknown.reason
    if not torch.cuda.is_available():
        [cuda] = set_params(probe, device="cuda")
        assert not cuda.successful and "CUDA is not available" in cuda.reason
    [ok] = set_params(probe, score_threshold=0.25)
    assert ok.successful and node.runtime.engine.policy.score_threshold == pytest.approx(0.25)
    [ok] = set_params(probe, score_threshold=0.3)
    assert ok.successful
    default = node.runtime.engine.policy.found_threshold
    [ok] = set_params(probe, found_threshold=0.85)
    assert ok.successful and node.runtime.engine.policy.found_threshold == pytest.approx(0.85)
    [ok] = set_params(probe, found_threshold=default)
    assert ok.successful


def test_hyper_parameter_change_reloads_and_reinitialises(setup) -> None:
    node, probe, frames, boxes = setup
    engine = node.runtime.engine
    start_tracking(probe, frames, boxes)
    for index in range(1, 5):
        probe.send_and_wait(frames[index], index)
    assert node.has_parameter("tracker_params.penalty_k")
    running = engine.tracker
    # hold the rebuild on an event: while it is held the reload is under way for certain
    gate, build = threading.Event(), engine._builder

    def held_build(request):
        assert gate.wait(60.0), "the test never released the reload"
        return build(request)

    engine._builder = held_build
    try:
        [result] = set_params(probe, tracker_params__penalty_k=0.2)
        assert result.successful, result.reason
        assert engine.reloading
        busy_init, busy_reset = node.runtime.init_target(tuple(boxes[4])), engine.reset()
    finally:
        gate.set()
        engine._builder = build
    assert not busy_init[0] and "loading" in busy_init[1], busy_init
    assert not busy_reset[0] and "loading" in busy_reset[1], busy_reset
    assert engine.wait_idle(60.0)
    assert engine.tracker is not running and engine.load_error is None
    assert dict(engine.loaded.overrides)["penalty_k"] == pytest.approx(0.2)
    assert engine.tracker.config.penalty_k == pytest.approx(0.2)
    msg = probe.send_and_wait(frames[5], 5)
    assert msg.state == TrackedObject.TRACKING and msg.frame_count == 1  # re-initialised (it was 4)
    # re-initialised on the last box: still on the walker 25 frames later, where that box is empty
    # (measured: IoU 0.62 at frame 30; a box left at frame 4 scores 0)
    for index in range(6, 31):
        msg = probe.send_and_wait(frames[index], index)
    assert msg.state == TrackedObject.TRACKING
    assert iou(boxes[4], boxes[30]) < 0.05
    assert iou(box_of(msg), boxes[30]) > 0.4
    [bad] = set_params(probe, tracker_params__no_such_field=1.0)
    assert not bad.successful


def test_init_and_reset_during_reload_are_refused(setup) -> None:
    node, probe, frames, boxes = setup
    start_tracking(probe, frames, boxes)
    runtime = node.runtime
    runtime.engine.request_model(runtime.model_request(), runtime._newest_frame)
    init, reset = runtime.init_target(tuple(boxes[0])), runtime.engine.reset()
    assert runtime.engine.wait_idle(60.0)
    # the reload was queued synchronously, so both calls saw it
    assert not init[0] and "loading" in init[1]
    assert not reset[0] and "loading" in reset[1]
    assert probe.send_and_wait(frames[1], 1).state == TrackedObject.TRACKING


def test_bad_weights_keep_the_running_model(setup, tmp_path) -> None:
    import torch

    from siam_tracking_ros.trackers import list_trackers, make_config
    from siam_tracking_ros.weights.io import save_weights

    node, probe, frames, boxes = setup
    start_tracking(probe, frames, boxes)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"this is not a checkpoint" * 10)
    other = next(n for n in list_trackers() if n != "nanotrack")
    wrong = save_weights(tmp_path / "other.safetensors", {"w": torch.zeros(1)}, other,
                         dataclasses.asdict(make_config(other)))
    good = node.get_parameter("weights").value
    for index, (path, expected) in enumerate([(corrupt, "refused to load"),
                                              (wrong, f"made for variant '{other}'")], start=1):
        [result] = set_params(probe, weights=str(path))
        assert not result.successful and expected in result.reason, result.reason  # refused at once
        assert node.get_parameter("weights").value == good  # the parameter names what runs
        assert node.runtime.engine.loaded.weights == good and not node.runtime.engine.reloading
        assert probe.send_and_wait(frames[index], index).state == TrackedObject.TRACKING
    # a header that passes but tensors that do not fit fail in the background build: set back
    misfit = save_weights(tmp_path / "misfit.safetensors", {"w": torch.zeros(1)}, "nanotrack",
                          dataclasses.asdict(make_config("nanotrack")))
    [result] = set_params(probe, weights=str(misfit))
    assert result.successful, result.reason
    assert node.runtime.engine.wait_idle(60.0)
    assert "do not fit" in (node.runtime.engine.load_error or ""), node.runtime.engine.load_error
    assert wait_for(lambda: node.get_parameter("weights").value == good, 10.0)
    assert node.runtime.engine.loaded.weights == good  # the old model still runs
    assert probe.send_and_wait(frames[3], 3).state == TrackedObject.TRACKING
    probe.diagnostics.clear()
    assert wait_for(lambda: bool(probe.latest_diagnostics()), 10.0)
    assert "do not fit" in probe.latest_diagnostics()["last_error"]
    [result] = set_params(probe, weights=good)
    assert result.successful and node.runtime.engine.wait_idle(60.0)
    assert node.runtime.engine.load_error is None


def test_switch_tracker_in_init_target_fails_cleanly_without_weights(setup) -> None:
    from siam_tracking_ros.trackers import get_spec, list_trackers

    node, probe, frames, boxes = setup
    without = [n for n in list_trackers() if n != "nanotrack" and not get_spec(n).default_weights.exists()]
    if not without:
        pytest.skip("every variant ships default weights")
    probe.new_run()
    probe.send_and_wait(frames[0], 0)
    answer = probe.init_target(boxes[0], tracker=without[0])
    assert not answer.success and "no trained default weights" in answer.message
    assert node.runtime.engine.wait_idle(60.0)
    assert node.get_parameter("tracker").value == "nanotrack"
    assert node.runtime.engine.loaded.tracker == "nanotrack"
    answer = probe.init_target(boxes[0])
    assert answer.success, answer.message


def test_debug_image_only_while_subscribed(setup) -> None:
    from sensor_msgs.msg import Image

    node, probe, frames, boxes = setup
    start_tracking(probe, frames, boxes)
    assert node.runtime.pub_debug.get_subscription_count() == 0
    images: list = []
    subscription = probe.create_subscription(Image, f"/{NODE_NAME}/debug_image", images.append, 10)
    assert wait_for(lambda: node.runtime.pub_debug.get_subscription_count() > 0)
    msg = probe.send_and_wait(frames[1], 1)
    assert wait_for(lambda: any(i.header.stamp == msg.header.stamp for i in images), 10.0)
    image = next(i for i in images if i.header.stamp == msg.header.stamp)
    assert (image.encoding, image.width, image.height) == ("bgr8", 360, 240)
    probe.destroy_subscription(subscription)


def test_runtime_variant_switch_redeclares_params_and_keeps_the_target(setup) -> None:
    node, probe, frames, boxes = setup
    start_tracking(probe, frames, boxes)
    for index in range(1, 4):
        probe.send_and_wait(frames[index], index)
    weights = node.get_parameter("weights").value
    client = AsyncParameterClient(probe, NODE_NAME)
    assert client.wait_for_services(timeout_sec=20.0)

    def switch(tracker: str, path: str, own: str, other: str) -> None:
        future = client.set_parameters_atomically([Parameter("tracker", value=tracker),
                                                   Parameter("weights", value=path)])
        assert wait_for(future.done, 30.0) and future.result().result.successful
        assert node.runtime.engine.wait_idle(120.0)
        assert wait_for(lambda: node.has_parameter(f"tracker_params.{own}"), 10.0)
        assert not node.has_parameter(f"tracker_params.{other}")

    switch("siamfc", "random", "scale_step", "version")  # untrained: plumbing checked, not the box
    assert node.runtime.engine.loaded.tracker == "siamfc"
    msg = probe.send_and_wait(frames[4], 4)
    assert msg.tracker == "siamfc" and msg.state != TrackedObject.IDLE  # re-initialised from the last box

    switch("nanotrack", weights, "version", "scale_step")
    msg = probe.send_and_wait(frames[5], 5)
    assert msg.tracker == "nanotrack" and msg.state == TrackedObject.TRACKING
