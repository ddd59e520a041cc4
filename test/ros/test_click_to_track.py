"""siam-click: box parsing and dragging, the headless error, and --box mode against a tracker over DDS."""

from __future__ import annotations

import subprocess
import threading

import numpy as np
import pytest
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from siam_ros_testing import ROOT, Spinner, ros_env, wait_for
from siam_tracking_ros.srv import InitTarget

from siam_tracking_ros.ros.click_to_track import BoxSelector, make_client_node, parse_box, run_with_box
from siam_tracking_ros.ros.image_conversion import cv2_to_imgmsg

pytestmark = [pytest.mark.ros]

INSTALLED = ROOT / "install" / "siam_tracking_ros" / "lib" / "siam_tracking_ros" / "siam-click"


def test_parse_box() -> None:
    assert parse_box("352,14,120,240") == (352.0, 14.0, 120.0, 240.0)
    assert parse_box("1.5 2 3 4") == (1.5, 2.0, 3.0, 4.0)
    for bad in ("1,2,3", "1,2,0,4", "a,b,c,d"):
        with pytest.raises(ValueError):
            parse_box(bad)


def test_dragging_in_any_direction_gives_the_box_and_a_click_gives_none() -> None:
    selector = BoxSelector()
    selector.press(100, 80)
    selector.move(60, 120)
    assert selector.box() == (60.0, 80.0, 40.0, 40.0)
    assert selector.release(40, 20) == (40.0, 20.0, 60.0, 60.0)
    assert not selector.dragging
    selector.press(10, 10)
    assert selector.release(12, 11) is None  # a click, not a box
    assert selector.release(50, 50) is None  # no press


def test_without_a_display_it_says_so_and_exits_2() -> None:
    if not INSTALLED.exists():
        pytest.skip(f"{INSTALLED} not installed: build the package (./setup.sh)")
    env = ros_env()
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    result = subprocess.run([str(INSTALLED)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "no display" in result.stderr and "--box" in result.stderr
    assert "Traceback" not in result.stderr


class FakeTracker(Node):
    """init_target like the tracker node: 'loading' twice, then 'no image' until frames come."""

    def __init__(self, namespace: str) -> None:
        super().__init__("tracker_node", namespace=namespace)
        self.requests: list[InitTarget.Request] = []
        self.first_stamp = None
        self.loading_answers = 2
        self.create_service(InitTarget, "~/init_target", self._on_init)
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.create_publisher(Image, "image", qos)

    def publish_frame(self, index: int) -> None:
        msg = cv2_to_imgmsg(np.full((120, 160, 3), index, np.uint8), "bgr8")
        msg.header.stamp.sec, msg.header.stamp.nanosec = 1000 + index, 0
        if self.first_stamp is None:
            self.first_stamp = msg.header.stamp
        self.image_pub.publish(msg)

    def _on_init(self, request, response):
        self.requests.append(request)
        if self.loading_answers > 0:
            self.loading_answers -= 1
            response.success, response.message = False, "model is (re)loading: wait"
        elif self.first_stamp is None:
            response.success, response.message = False, "no image received yet on /image"
        elif (request.stamp.sec, request.stamp.nanosec) == (self.first_stamp.sec, self.first_stamp.nanosec):
            response.success, response.message = True, "tracking"
        else:
            response.success, response.message = False, "no buffered frame with that stamp"
        return response


def test_box_mode_waits_for_the_model_and_initialises_on_the_first_frame(ros_session) -> None:
    namespace = "/click_test"
    tracker = FakeTracker(namespace)
    client = make_client_node(f"{namespace}/tracker_node", f"{namespace}/image")
    spinner = Spinner(tracker, client)
    outcome: list[tuple[bool, str]] = []
    worker = threading.Thread(target=lambda: outcome.append(run_with_box(client, (10, 20, 30, 40), 60.0)))
    try:
        worker.start()
        # like video_publisher --wait-subscribers: the video starts once siam-click listens
        assert wait_for(lambda: tracker.image_pub.get_subscription_count() > 0, 60.0)
        index = 0
        while worker.is_alive() and index < 200:
            tracker.publish_frame(index)
            index += 1
            worker.join(timeout=0.05)
        worker.join(timeout=60.0)
    finally:
        spinner.stop()
        client.destroy_node()
        tracker.destroy_node()
    assert outcome == [(True, "tracking")]
    last = tracker.requests[-1]
    assert (last.x, last.y, last.width, last.height) == (10.0, 20.0, 30.0, 40.0)
    assert (last.stamp.sec, last.stamp.nanosec) == (tracker.first_stamp.sec, tracker.first_stamp.nanosec)
    assert [r.stamp.sec for r in tracker.requests[:3]] == [0, 0, 0]  # newest frame while loading
