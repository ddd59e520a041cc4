"""The installed console scripts as separate processes, talking to the test over DDS."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from siam_ros_testing import ROOT, Probe, Spinner, iou, ros_env, wait_for
from siam_tracking_ros.msg import TrackedObject

pytestmark = [pytest.mark.ros, pytest.mark.shared_data, pytest.mark.slow]

INSTALLED = ROOT / "install" / "siam_tracking_ros" / "lib" / "siam_tracking_ros"


def executable(name: str) -> str:
    path = INSTALLED / name
    if not path.exists():
        pytest.skip(f"{path} not installed: build the package (./setup.sh)")
    return str(path)


class Process:
    """A child process with its output in a file; stopped with SIGINT like Ctrl-C."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self._file = open(log, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=self._file, stderr=subprocess.STDOUT,
                                     env=ros_env({"OMP_NUM_THREADS": "1"}), start_new_session=True)

    def output(self) -> str:
        if not self._file.closed:
            self._file.flush()
        return self.log.read_text()

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._file.close()
        return self.proc.returncode


@pytest.fixture
def probe_for(ros_session):
    made = []

    def make(target: str, image_topic: str) -> Probe:
        probe = Probe(target, image_topic=image_topic)
        made.append((probe, Spinner(probe)))
        return probe

    yield make
    for probe, spinner in made:
        spinner.stop()
        probe.destroy_node()


def init_when_loaded(probe: Probe, box, index: int, timeout: float = 60.0):
    """init_target, retried while the node is still loading its model."""
    answer = None
    ok = wait_for(lambda: (answer := probe.init_target(box, index=index)).success
                  or "loading" not in answer.message, timeout, period=0.3)
    return probe.init_target(box, index=index) if not ok or answer is None else answer


def test_installed_tracker_node_with_params_file(probe_for, tmp_path, nanotrack_weights, crossing) -> None:
    process = Process([executable("tracker_node"), "--ros-args", "--params-file", "config/nanotrack.yaml",
                       "-p", f"weights:={nanotrack_weights}", "-p", "device:=cpu",
                       "-p", "image_reliability:=reliable", "-p", "diagnostics_period:=0.3",
                       "-r", "__node:=tracker_proc", "-r", "image:=/proc_test/image"], tmp_path / "node.log")
    try:
        probe = probe_for("/tracker_proc", "/proc_test/image")
        probe.wait_subscribers(60.0)
        probe.send_and_wait(crossing.frame(0), 0, timeout=60.0)
        answer = init_when_loaded(probe, crossing.boxes[0], 0)
        assert answer.success, answer.message
        overlaps = []
        for index in range(1, 30):
            msg = probe.send_and_wait(crossing.frame(index), index)
            assert msg.state == TrackedObject.TRACKING and msg.tracker == "nanotrack"
            overlaps.append(iou((msg.x, msg.y, msg.width, msg.height), crossing.boxes[index]))
        assert sum(overlaps) / len(overlaps) > 0.5, overlaps

        client = AsyncParameterClient(probe, "tracker_proc")
        assert client.wait_for_services(timeout_sec=20.0)
        future = client.set_parameters([Parameter("lost_frames", value=-3)])
        assert wait_for(future.done)
        assert not future.result().results[0].successful
        future = client.get_parameters(["tracker", "tracker_params.version", "lost_frames"])
        assert wait_for(future.done)
        values = [v.string_value or v.integer_value for v in future.result().values]
        assert values == ["nanotrack", "v2", 10]  # v2 read off the weights; lost_frames from the file
        assert wait_for(lambda: probe.latest_diagnostics().get("variant") == "nanotrack", 20.0)
    finally:
        code = process.stop()
    assert code == 0, process.output()
    assert "loaded 'nanotrack'" in process.output()


def test_installed_video_publisher_plays_a_folder(probe_for, tmp_path, sequences_dir) -> None:
    from sensor_msgs.msg import Image

    probe = probe_for("/unused", "/unused_image")
    received: list = []
    probe.create_subscription(Image, "/vp_test/image", received.append, 50)
    process = Process([executable("video_publisher"), str(sequences_dir / "otb_Crossing"), "--rate", "40",
                       "--max-frames", "12", "--frame-id", "cam_test", "--topic", "/vp_test/image",
                       "--start", "5", "--wait-subscribers", "1"], tmp_path / "player.log")
    try:
        assert wait_for(lambda: process.proc.poll() is not None, 60.0), process.output()
    finally:
        code = process.stop()
    assert code == 0, process.output()
    assert "finished after 12 frames" in process.output()
    assert len(received) >= 10, process.output()  # reliable, keep-last 5: a slow reader may lose a few
    assert all(m.header.frame_id == "cam_test" and (m.width, m.height) == (360, 240) for m in received)
    assert all(m.encoding == "bgr8" for m in received)


def test_installed_demo_on_a_sequence_folder(tmp_path, nanotrack_weights, sequences_dir) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(
        [executable("siam-demo"), str(sequences_dir / "otb_Crossing"), "--max-frames", "20", "--rate", "15",
         "--weights", str(nanotrack_weights), "--device", "cpu", "--out", str(out)],
        cwd=ROOT, env=ros_env({"OMP_NUM_THREADS": "1"}), capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "init_target: ok" in result.stdout and "mean IoU" in result.stdout, result.stdout
    with open(out / "tracking_log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and rows[0]["frame"] == "0"
    ious = [float(r["iou"]) for r in rows if r["iou"]]
    assert ious and sum(ious) / len(ious) > 0.5
    assert (out / "tracked.mp4").stat().st_size > 0


def test_demo_rejects_a_missing_source(tmp_path) -> None:
    command = [sys.executable, "-m", "siam_tracking_ros.ros.demo", str(tmp_path / "nothing.mp4"),
               "--out", str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, env=ros_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "no such video" in result.stderr


def test_installed_lifecycle_node_starts_unconfigured(probe_for, tmp_path) -> None:
    from lifecycle_msgs.srv import GetState

    process = Process([executable("tracker_lifecycle_node"), "--ros-args", "--params-file",
                       "config/siamfc.yaml", "-p", "weights:=random", "-p", "device:=cpu",
                       "-r", "__node:=tracker_lc_proc"], tmp_path / "lifecycle.log")
    try:
        probe = probe_for("/tracker_lc_proc", "/lc_unused_image")
        client = probe.create_client(GetState, "/tracker_lc_proc/get_state")
        answer = probe.call(client, GetState.Request())
        assert answer.current_state.label == "unconfigured"
    finally:
        code = process.stop()
    assert code == 0, process.output()
