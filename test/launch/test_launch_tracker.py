# ruff: noqa: I001  (the repository's launch/ folder makes ruff take `launch` for first-party)
"""launch/tracker.launch.py started with launch_pytest (real ROS 2 installs only).

launch, launch_ros and launch_pytest are not installable from PyPI (only from a ROS 2 install).
Nothing here raises at import: launch_testing's pytest plugin imports every test module while it
collects a folder, and a module-level skip there would skip the whole folder (the ROS-free launch
checks next to this file included). Without the launch packages each test skips itself, naming the
import that failed. Checked passing with ros2/launch 3.7.1 (launch, launch_pytest, launch_testing)
and launch_ros 0.28.0 from source on pytest 8.3.5 (docs/NODE.md says how); launch_pytest fails at
collection on pytest >= 8.4 (hence the pytest pin in requirements.txt).
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
NAMESPACE = "launch_test"
FILE_NAMESPACE = "launch_test_file"

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
def user_params_file() -> Path:
    """A user's parameter file naming a variant and a device, and nothing else."""
    path = Path(tempfile.mkdtemp(prefix="siam_launch_")) / "mine.yaml"
    path.write_text("/**:\n  ros__parameters:\n    tracker: siamfc\n    device: cpu\n    weights: random\n")
    return path


@cache
def quoted_video() -> Path:
    """A short real video file whose path has a quote and spaces (it aborted the old launch file)."""
    import cv2
    import numpy as np

    path = Path(tempfile.mkdtemp(prefix="siam_launch_")) / "it's a clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 120))
    for index in range(20):
        frame = np.full((120, 160, 3), 90, np.uint8)
        frame[40:80, 20 + 4 * index:60 + 4 * index] = 255
        writer.write(frame)
    writer.release()
    return path


def probe_until(predicate, timeout: float = 90.0):
    """Spin a probe node until ``predicate(node)`` is truthy; returns its last value."""
    import rclpy

    rclpy.init()
    try:
        node = rclpy.create_node("launch_probe")
        deadline, value = time.monotonic() + timeout, None
        while time.monotonic() < deadline and not value:
            rclpy.spin_once(node, timeout_sec=0.2)
            value = predicate(node)
        node.destroy_node()
        return value
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
    def _include(**arguments: str) -> LaunchDescription:
        if shutil.which("tracker_node") is None:
            pytest.skip("tracker_node is not installed (build the package)")
        include = IncludeLaunchDescription(
            PythonLaunchDescriptionSource(str(ROOT / "launch" / "tracker.launch.py")),
            launch_arguments=arguments.items())
        return LaunchDescription([include, launch_pytest.actions.ReadyToTest()])

    @launch_pytest.fixture
    def tracker_launch():
        return _include(tracker="siamfc", weights="random", device="cpu", namespace=NAMESPACE,
                        image="camera/image", video=str(quoted_video()))

    @launch_pytest.fixture
    def params_file_launch():
        return _include(params_file=str(user_params_file()), namespace=FILE_NAMESPACE)

    @pytest.mark.launch(fixture=tracker_launch)
    def test_node_starts_offers_its_interfaces_and_plays_a_quoted_path() -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        expected = {f"/{NAMESPACE}/tracker_node/init_target", f"/{NAMESPACE}/tracker_node/reset"}
        received: list[int] = []

        def on_diagnostics(msg) -> None:  # the tracker counts the frames the player sent it
            for status in msg.status:
                if status.name.startswith(f"/{NAMESPACE}/tracker_node"):
                    values = {kv.key: kv.value for kv in status.values}
                    received.append(int(values.get("received_frames", "0")))

        def ready(node):
            if not hasattr(node, "diagnostics_subscription"):
                node.diagnostics_subscription = node.create_subscription(
                    DiagnosticArray, "/diagnostics", on_diagnostics, 10)
            services = {name for name, _ in node.get_service_names_and_types()}
            # services up, and frames from the player arrived on the remapped input
            return expected <= services and any(count > 0 for count in received)

        assert probe_until(ready), f"tracker services or frames missing (received: {received[-3:]})"

    @pytest.mark.launch(fixture=params_file_launch)
    def test_params_file_values_win_over_argument_defaults_and_layer_over_the_packaged_config() -> None:
        names = ["tracker", "device", "weights", "lost_frames"]
        values = probe_until(lambda node: parameters_of(node, f"/{FILE_NAMESPACE}/tracker_node", names))
        # the user's file (not the launch defaults nanotrack / auto), over config/siamfc.yaml
        assert values == {"tracker": "siamfc", "device": "cpu", "weights": "random", "lost_frames": 10}
else:
    def test_node_starts_offers_its_interfaces_and_plays_a_quoted_path() -> None:
        pytest.skip(MISSING)

    def test_params_file_values_win_over_argument_defaults_and_layer_over_the_packaged_config() -> None:
        pytest.skip(MISSING)
