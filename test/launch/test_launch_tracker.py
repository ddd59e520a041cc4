"""launch/tracker.launch.py started with launch_pytest (real ROS 2 installs only).

launch, launch_ros and launch_pytest are not installable from PyPI (only from a ROS 2 install),
so the launch test skips cleanly without them. Checked passing with ros2/launch 3.7.1 (launch,
launch_pytest, launch_testing) and launch_ros from source on pytest 8.3.5; launch_pytest fails at
collection on pytest >= 8.4 (hence the pytest pin in requirements.txt).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


launch_pytest = pytest.importorskip("launch_pytest", reason="launch_pytest needs a ROS 2 install")
pytest.importorskip("launch_ros", reason="launch_ros needs a ROS 2 install")

from launch import LaunchDescription  # noqa: E402, I001
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
NAMESPACE = "launch_test"


@launch_pytest.fixture
def tracker_launch():
    if shutil.which("tracker_node") is None:
        pytest.skip("tracker_node is not installed (build the package)")
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(ROOT / "launch" / "tracker.launch.py")),
        launch_arguments={"tracker": "siamfc", "weights": "random", "device": "cpu",
                          "namespace": NAMESPACE, "image": "camera/image"}.items())
    return LaunchDescription([include, launch_pytest.actions.ReadyToTest()])


@pytest.mark.launch(fixture=tracker_launch)
def test_node_starts_and_offers_its_interfaces() -> None:
    import rclpy

    rclpy.init()
    try:
        node = rclpy.create_node("launch_probe")
        expected = {f"/{NAMESPACE}/tracker_node/init_target", f"/{NAMESPACE}/tracker_node/reset"}
        deadline = time.monotonic() + 60.0
        found: set[str] = set()
        while time.monotonic() < deadline and not expected <= found:
            rclpy.spin_once(node, timeout_sec=0.2)
            found = {name for name, _ in node.get_service_names_and_types()}
        assert expected <= found, found
        topics = dict(node.get_topic_names_and_types())
        assert f"/{NAMESPACE}/camera/image" in topics  # the remapped input
        node.destroy_node()
    finally:
        rclpy.try_shutdown()
