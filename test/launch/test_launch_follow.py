# ruff: noqa: I001  (the repository's launch/ folder makes ruff take `launch` for first-party)
"""launch/follow.launch.py and launch/demo.launch.py started with launch_pytest (ROS 2 installs only).

Like test_launch_tracker.py: nothing raises at import; without launch, launch_ros and launch_pytest
each test skips itself and names the import that failed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLLOW_NAMESPACE = "launch_follow"
DEMO_NAMESPACE = "launch_demo"

# The skip reasons start like test/conftest.py CI_ALLOWED_SKIPS and end with the real error.
try:
    import launch_pytest
except Exception as exc:  # ImportError, or one of its own imports failing
    launch_pytest, MISSING = None, f"launch_pytest needs a ROS 2 install: {exc!r}"
else:
    try:
        import launch_ros  # noqa: F401  (the launch files need it)
        from launch import LaunchDescription
        from launch.actions import IncludeLaunchDescription
        from launch.launch_description_sources import PythonLaunchDescriptionSource
    except Exception as exc:  # e.g. launch_ros present but composition_interfaces missing
        launch_pytest, MISSING = None, f"launch_ros needs a ROS 2 install: {exc!r}"
    else:
        MISSING = ""

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


@cache
def clip() -> Path:
    """A short video (a bright square moving right), its path with a quote and a space."""
    import cv2
    import numpy as np

    path = Path(tempfile.mkdtemp(prefix="siam_launch_")) / "demo's clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 120))
    for index in range(30):
        frame = np.full((120, 160, 3), 90, np.uint8)
        frame[40:80, 20 + 2 * index:60 + 2 * index] = 255
        writer.write(frame)
    writer.release()
    return path


def watch(until, timeout: float = 120.0):
    """Spin a probe node, calling ``until(node, seen)`` with the messages seen so far."""
    import rclpy
    from geometry_msgs.msg import Twist
    from siam_tracking_ros.msg import TrackedObject

    rclpy.init()
    try:
        node = rclpy.create_node("launch_probe")
        seen: dict[str, list] = {"objects": [], "commands": []}
        node.create_subscription(TrackedObject, f"/{DEMO_NAMESPACE}/tracker_node/tracked_object",
                                 seen["objects"].append, 50)
        node.create_subscription(Twist, f"/{DEMO_NAMESPACE}/cmd_vel", seen["commands"].append, 50)
        deadline, result = time.monotonic() + timeout, None
        while time.monotonic() < deadline and not result:
            rclpy.spin_once(node, timeout_sec=0.2)
            result = until(node, seen)
        node.destroy_node()
        return result
    finally:
        rclpy.try_shutdown()


def parameters_of(node, target: str, names: list[str], timeout: float = 60.0) -> dict:
    import rclpy
    from rclpy.parameter import parameter_value_to_python
    from rclpy.parameter_client import AsyncParameterClient

    client = AsyncParameterClient(node, target)
    assert client.wait_for_services(timeout_sec=timeout), f"no parameter services on {target}"
    future = client.get_parameters(names)
    rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
    return {n: parameter_value_to_python(v) for n, v in zip(names, future.result().values, strict=True)}


if launch_pytest is not None:
    def _include(name: str, **arguments: str) -> LaunchDescription:
        if shutil.which("follow_target") is None:
            pytest.skip("follow_target is not installed (build the package)")
        include = IncludeLaunchDescription(PythonLaunchDescriptionSource(str(ROOT / "launch" / name)),
                                           launch_arguments=arguments.items())
        return LaunchDescription([include, launch_pytest.actions.ReadyToTest()])

    @launch_pytest.fixture
    def follow_launch():
        return _include("follow.launch.py", tracker="siamfc", weights="random", device="cpu",
                        namespace=FOLLOW_NAMESPACE, image="camera/image", cmd_vel="robot_cmd_vel",
                        mode="pan_tilt")

    @launch_pytest.fixture
    def demo_launch():
        return _include("demo.launch.py", video=str(clip()), box="20,40,40,40", tracker="siamfc",
                        weights="random", device="cpu", namespace=DEMO_NAMESPACE, follow="true",
                        loop="true", exit_at_end="false")

    @pytest.mark.launch(fixture=follow_launch)
    def test_follow_launch_wires_the_follower_to_the_tracker() -> None:
        ns = f"/{FOLLOW_NAMESPACE}"

        def wired(node, seen):
            subscribed = node.count_subscribers(f"{ns}/tracker_node/tracked_object") > 0
            publishing = node.count_publishers(f"{ns}/robot_cmd_vel") > 0
            info = node.count_subscribers(f"{ns}/camera/camera_info") > 0  # beside the image topic
            tracker = node.count_subscribers(f"{ns}/camera/image") > 0
            return subscribed and publishing and info and tracker

        assert watch(wired), "follow_target or the tracker is not on the expected topics"
        values = watch(lambda node, seen: parameters_of(node, f"{ns}/follow_target",
                                                        ["mode", "min_score", "timeout"]))
        assert values == {"mode": "pan_tilt", "min_score": 0.5, "timeout": 0.5}  # argument over the file

    @pytest.mark.launch(fixture=demo_launch)
    def test_demo_launch_plays_the_quoted_video_tracks_the_box_and_commands() -> None:
        from siam_tracking_ros.msg import TrackedObject

        def tracking(node, seen):
            states = [o.state for o in seen["objects"]]
            return TrackedObject.TRACKING in states and len(seen["commands"]) > 0

        assert watch(tracking), "the demo never tracked the box or never commanded"
else:
    def test_follow_launch_wires_the_follower_to_the_tracker() -> None:
        pytest.skip(MISSING)

    def test_demo_launch_plays_the_quoted_video_tracks_the_box_and_commands() -> None:
        pytest.skip(MISSING)
