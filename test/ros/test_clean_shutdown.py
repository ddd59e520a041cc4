"""Ctrl-C under ``ros2 launch``: every process gets two SIGINTs (terminal, then launch) and must end
with exit code 0 and no traceback, whenever the second one arrives during cleanup."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from siam_ros_testing import ROOT, ros_env, wait_for

pytestmark = [pytest.mark.ros, pytest.mark.slow]

INSTALLED = ROOT / "install" / "siam_tracking_ros" / "lib" / "siam_tracking_ros"


def clip(folder: Path) -> Path:
    path = folder / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 120))
    for index in range(10):
        writer.write(np.full((120, 160, 3), 20 * index, np.uint8))
    writer.release()
    return path


def configure(node, lifecycle_node: str) -> None:
    """Drive a lifecycle node to configured (its topics, services and worker thread exist)."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    client = node.create_client(ChangeState, f"{lifecycle_node}/change_state")
    assert client.wait_for_service(timeout_sec=60.0)
    future = client.call_async(ChangeState.Request(transition=Transition(id=Transition.TRANSITION_CONFIGURE)))
    assert wait_for(future.done, 60.0) and future.result().success


# tracker_node: SIGINT while it may still be loading (its parameter services are up, the model maybe
# not); the lifecycle node: configured, so cleanup joins its worker; the player: while it plays.
@pytest.mark.parametrize(("executable", "gap"), [("tracker_node", 0.05), ("tracker_lifecycle_node", 0.3),
                                                 ("video_publisher", 0.05), ("video_publisher", 0.3)])
def test_second_sigint_during_cleanup_ends_cleanly(ros_session, tmp_path: Path, executable: str,
                                                   gap: float) -> None:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    path = INSTALLED / executable
    if not path.exists():
        pytest.skip(f"{path} not installed: build the package (./setup.sh)")
    namespace = f"/shutdown_{executable}_{int(gap * 100)}"
    args = [str(path), "--ros-args", "-r", f"__ns:={namespace}"]
    if executable == "video_publisher":
        args[1:1] = [str(clip(tmp_path)), "--loop"]
        ready_name = f"{namespace}/image"
    else:
        args += ["-p", "tracker:=siamfc", "-p", "weights:=random", "-p", "device:=cpu"]
        ready_name = f"{namespace}/tracker_node/get_parameters"
    log = tmp_path / "out.log"
    probe = rclpy.create_node("shutdown_probe")
    executor = SingleThreadedExecutor()
    executor.add_node(probe)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    with open(log, "w") as out:
        process = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                   env=ros_env({"OMP_NUM_THREADS": "1"}), start_new_session=True)
        try:
            def ready() -> bool:
                if executable == "video_publisher":
                    return probe.count_publishers(ready_name) > 0
                return ready_name in {name for name, _ in probe.get_service_names_and_types()}

            assert wait_for(ready, 120.0), f"{executable} never came up"
            if executable == "tracker_lifecycle_node":
                configure(probe, f"{namespace}/tracker_node")
                assert wait_for(lambda: f"{namespace}/tracker_node/reset" in
                                {name for name, _ in probe.get_service_names_and_types()}, 60.0)
            process.send_signal(signal.SIGINT)  # the terminal's Ctrl-C ...
            time.sleep(gap)
            process.send_signal(signal.SIGINT)  # ... and the one ros2 launch forwards
            code = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            executor.shutdown()
            probe.destroy_node()
    output = log.read_text()
    assert code == 0, output
    assert "Traceback" not in output, output
