"""Issue 12 over real DDS: the packaged default goes TRACKING -> LOST when the camera shows another
scene, and back to TRACKING when the target's scene returns (default score threshold and policy)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from rclpy.parameter import Parameter
from siam_ros_testing import Probe, Spinner, iou
from siam_tracking_ros.msg import TrackedObject

pytestmark = [pytest.mark.ros, pytest.mark.shared_data]

NODE_NAME = "presence_node"
BEFORE, AWAY = 30, 30


@pytest.fixture(scope="module")
def setup(ros_session, sequences_dir):
    from siam_tracking_ros.data.sequences import load_otb_sequence, load_sequence
    from siam_tracking_ros.ros.tracker_node import TrackerNode

    car = load_otb_sequence(sequences_dir / "otb_Car1")
    other = load_sequence(sequences_dir / "vot_bag")
    node = TrackerNode(NODE_NAME, parameter_overrides=[  # weights "": the packaged default
        Parameter("device", value="cpu"), Parameter("image_reliability", value="reliable"),
        Parameter("lost_frames", value=5), Parameter("found_frames", value=2)])
    probe = Probe(f"/{NODE_NAME}")
    spinner = Spinner(node, probe)
    probe.wait_subscribers()
    assert node.runtime.engine.wait_idle(60.0)
    assert node.runtime.engine.tracker is not None, node.runtime.engine.load_error
    height, width = car.frame(0).shape[:2]
    away = [cv2.resize(other.frame(i), (width, height)) for i in range(AWAY)]  # same camera, new scene
    yield probe, car, away
    spinner.stop()
    node.destroy_node()
    probe.destroy_node()


def test_lost_when_the_scene_changes_and_found_when_it_returns(setup) -> None:
    probe, car, away = setup
    probe.new_run()
    probe.reset()
    probe.send_and_wait(car.frame(0), 0)
    assert probe.init_target(car.boxes[0], index=0).success
    before = [probe.send_and_wait(car.frame(i), i) for i in range(1, BEFORE + 1)]
    assert all(m.state == TrackedObject.TRACKING for m in before)
    assert np.mean([iou((m.x, m.y, m.width, m.height), car.boxes[i + 1]) for i, m in enumerate(before)]) > 0.5
    last_confident = (before[-1].x, before[-1].y, before[-1].width, before[-1].height)

    gone = [probe.send_and_wait(frame, BEFORE + 1 + i) for i, frame in enumerate(away)]
    assert all(m.state == TrackedObject.LOST for m in gone[10:]), [m.state for m in gone]
    assert all((m.x, m.y, m.width, m.height) == last_confident for m in gone[10:])  # the last confident box
    assert np.mean([m.score for m in gone[10:]]) < 0.3

    offset = BEFORE + 1 + AWAY
    back = [probe.send_and_wait(car.frame(i), offset + i) for i in range(BEFORE + 1, BEFORE + 31)]
    states = [m.state for m in back]
    assert TrackedObject.TRACKING in states[:6], states
    assert all(s == TrackedObject.TRACKING for s in states[10:]), states
    assert np.mean([iou((m.x, m.y, m.width, m.height), car.boxes[BEFORE + 1 + i])
                    for i, m in enumerate(back[10:])]) > 0.5
