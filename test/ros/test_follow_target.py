"""follow_target over real DDS: TrackedObject streams in, cmd_vel out.

Each test runs a FollowTargetNode in its own namespace and a probe node on one executor; the probe
publishes TrackedObject streams (ground truth of real sequences replayed as tracking results, and
built streams) and records every command. A published object is matched to its command by value:
the probe waits until a command arrives that equals what the control law gives for that object
(the controller publishes on every object and at its rate), so nothing depends on timing. The
installed executable is also started as a process with config/follow.yaml.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import threading
from collections.abc import Callable

import numpy as np
import pytest
from geometry_msgs.msg import Twist, TwistStamped
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import DurabilityPolicy, QoSProfile
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo
from siam_ros_testing import ROOT, SEQUENCES, Spinner, ros_env, wait_for
from siam_tracking_ros.msg import TrackedObject
from std_msgs.msg import String

from siam_tracking_ros.control.follow import FollowCommand, FollowConfig, follow_command
from siam_tracking_ros.ros.follow_target import FollowTargetNode, observation_from_msg

pytestmark = [pytest.mark.ros]

IMAGE = (320, 240)
INSTALLED = ROOT / "install" / "siam_tracking_ros" / "lib" / "siam_tracking_ros" / "follow_target"
_namespaces = itertools.count()


def tracked(box: tuple[float, float, float, float], state: int = TrackedObject.TRACKING,
            score: float = 0.9, latency_ms: float = 0.0, image: tuple[int, int] = IMAGE) -> TrackedObject:
    msg = TrackedObject()
    msg.header.frame_id = "camera"
    msg.tracker = "recorded"
    msg.state, msg.score, msg.latency_ms = state, float(score), float(latency_ms)
    msg.x, msg.y, msg.width, msg.height = (float(v) for v in box)
    msg.image_width, msg.image_height = image
    return msg


def centred(width: float, height: float, dx: float = 0.0, dy: float = 0.0) -> tuple[float, ...]:
    """A box whose centre is ``(dx, dy)`` pixels off the centre of a 320x240 image."""
    return (IMAGE[0] / 2 + dx - width / 2, IMAGE[1] / 2 + dy - height / 2, width, height)


def as_tuple(twist: Twist) -> tuple[float, float, float]:
    return twist.linear.x, twist.angular.y, twist.angular.z


class CommandProbe(Node):
    """Publishes tracked objects / camera info into ``namespace`` and records its commands."""

    def __init__(self, namespace: str, stamped: bool = False) -> None:
        super().__init__("follow_probe", namespace=namespace)
        self._lock = threading.Lock()
        self.commands: list[Twist] = []
        self.stamped_commands: list[TwistStamped] = []
        self.statuses: list[str] = []
        self.object_pub = self.create_publisher(TrackedObject, "tracked_object", 10)
        self.info_pub = self.create_publisher(CameraInfo, "camera_info", 10)
        self.cmd_sub = self.create_subscription(TwistStamped if stamped else Twist, "cmd_vel",
                                                self._on_command, 100)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.create_subscription(String, "follow_target/status", self._on_status, latched)

    def _on_command(self, msg) -> None:
        with self._lock:
            if isinstance(msg, TwistStamped):
                self.stamped_commands.append(msg)
                msg = msg.twist
            self.commands.append(msg)

    def _on_status(self, msg: String) -> None:
        with self._lock:
            self.statuses.append(msg.data)

    def received(self) -> list[Twist]:
        with self._lock:
            return list(self.commands)

    def status(self) -> str:
        with self._lock:
            return self.statuses[-1] if self.statuses else ""

    def wait_connected(self) -> None:
        assert wait_for(lambda: self.object_pub.get_subscription_count() > 0), "follow_target not there"
        assert wait_for(lambda: self.cmd_sub.get_publisher_count() > 0), "cmd_vel never discovered"

    def command_after(self, mark: int, accept: Callable[[Twist], bool], timeout: float = 20.0) -> Twist:
        """The first command after the ``mark``-th that ``accept`` takes (fails after ``timeout`` s)."""
        found: list[Twist] = []

        def check() -> bool:
            found[:] = [c for c in self.received()[mark:] if accept(c)][:1]
            return bool(found)

        assert wait_for(check, timeout), f"no matching command; last: {self.received()[-1:]}"
        return found[0]

    def send(self, msg: TrackedObject, expect: Callable[[Twist], bool]) -> Twist:
        """Publish ``msg`` and return the first later command that ``expect`` accepts."""
        mark = len(self.received())
        self.object_pub.publish(msg)
        return self.command_after(mark, expect)

    def send_expecting(self, msg: TrackedObject, config: FollowConfig, camera=None) -> Twist:
        """Publish ``msg`` and wait for exactly the control law's command for it."""
        on_the_wire = deserialize_message(serialize_message(msg), TrackedObject)  # float32 fields
        want = follow_command(config, observation_from_msg(on_the_wire), 0.0, camera)
        return self.send(msg, lambda c: as_tuple(c) == pytest.approx(
            (want.forward, want.tilt_rate, want.yaw_rate), abs=1e-9))


@pytest.fixture
def follower(ros_session):
    """Factory: a FollowTargetNode with parameter overrides and its probe, spinning together."""
    made: list[tuple[Spinner, Node, Node]] = []

    def make(stamped: bool = False, **params) -> tuple[FollowTargetNode, CommandProbe]:
        namespace = f"/follow_test_{next(_namespaces)}"
        overrides = [Parameter(name, value=value) for name, value in
                     {"rate": 50.0, "timeout": 60.0, "stamped": stamped, **params}.items()]
        node = FollowTargetNode(namespace=namespace, parameter_overrides=overrides)
        probe = CommandProbe(namespace, stamped=stamped)
        made.append((Spinner(node, probe), node, probe))
        probe.wait_connected()
        return node, probe

    yield make
    for spinner, node, probe in made:
        spinner.stop()
        probe.destroy_node()
        node.destroy_node()


def ground_truth_stream(name: str, step: int) -> tuple[list[TrackedObject], tuple[int, int]]:
    """A sequence's labelled boxes replayed as a TrackedObject stream (every ``step``-th frame)."""
    folder = SEQUENCES / name
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    import cv2

    from siam_tracking_ros.data.sequences import load_sequence

    sequence = load_sequence(folder)
    height, width = cv2.imread(str(sequence.frames[0])).shape[:2]
    boxes = [b for b in sequence.boxes[::step] if np.all(np.isfinite(b)) and b[2] > 0 and b[3] > 0]
    return [tracked(tuple(b), image=(width, height)) for b in boxes], (width, height)


@pytest.mark.shared_data
def test_recorded_car_stream_turns_towards_the_car_and_slows_as_it_grows(follower) -> None:
    stream, (width, _) = ground_truth_stream("otb_Car1", step=10)
    config = FollowConfig(max_reverse_speed=0.3)
    _, probe = follower(max_reverse_speed=0.3)
    results = []
    for msg in stream:
        command = probe.send_expecting(msg, config)
        results.append((msg, as_tuple(command)))
    offsets = [(m.x + m.width / 2 - width / 2, m.height, c) for m, c in results]
    turning = [(dx, c[2]) for dx, _, c in offsets if c[2] != 0.0]
    assert len(turning) > len(results) // 2, "the car should be off-centre most of the time"
    assert all((dx > 0) == (yaw < 0) for dx, yaw in turning), "turns away from the car"
    by_height = sorted((h, c[0]) for _, h, c in offsets)
    assert all(a[1] >= b[1] for a, b in itertools.pairwise(by_height)), "a bigger car must not be faster"
    assert by_height[0][1] > by_height[-1][1]


def test_approach_stream_slows_to_a_stop_while_turning_right(follower) -> None:
    config = FollowConfig()
    _, probe = follower()
    speeds, yaws = [], []
    for height in range(20, 141, 10):
        forward, _, yaw = as_tuple(probe.send_expecting(tracked(centred(height / 2, height, dx=60)), config))
        speeds.append(forward)
        yaws.append(yaw)
    assert all(a >= b for a, b in itertools.pairwise(speeds)), speeds
    assert all(a > b for a, b in itertools.pairwise(speeds[1:11])), speeds  # below the cap, above goal
    assert speeds[0] == config.max_forward_speed and speeds[-1] == 0.0  # capped far away, 0 at goal
    assert all(y < 0.0 for y in yaws)


def test_stops_on_lost_idle_and_low_score_and_resumes(follower) -> None:
    config = FollowConfig()
    _, probe = follower()
    moving = tracked(centred(20, 40, dx=-80))
    assert any(as_tuple(probe.send_expecting(moving, config)))
    for msg, reason in [(tracked(centred(20, 40, dx=-80), state=TrackedObject.LOST), "LOST"),
                        (tracked(centred(20, 40, dx=-80), state=TrackedObject.IDLE), "IDLE"),
                        (tracked(centred(20, 40, dx=-80), score=0.3), "low score")]:
        command = probe.send(msg, lambda c: as_tuple(c) == (0.0, 0.0, 0.0))
        assert as_tuple(command) == (0.0, 0.0, 0.0)
        assert wait_for(lambda r=reason: probe.status().startswith(r)), probe.status()
        assert as_tuple(probe.send_expecting(moving, config))[2] > 0.0  # resumes: turns left
        assert wait_for(lambda: probe.status() == "following")


def test_stops_when_tracked_objects_stop_coming_or_arrive_late(follower) -> None:
    _, probe = follower(timeout=0.3)
    moving = probe.send(tracked(centred(20, 40, dx=80)), lambda c: c.angular.z < 0.0)
    assert moving.linear.x > 0.0
    mark = len(probe.received())
    probe.command_after(mark, lambda c: as_tuple(c) == (0.0, 0.0, 0.0))  # nothing sent: goes stale
    assert wait_for(lambda: probe.status().startswith("stale")), probe.status()
    probe.send(tracked(centred(20, 40, dx=80)), lambda c: c.angular.z < 0.0)  # fresh again: moves
    late = probe.send(tracked(centred(20, 40, dx=80), latency_ms=2000.0),
                      lambda c: as_tuple(c) == (0.0, 0.0, 0.0))  # the image was 2 s old already
    assert as_tuple(late) == (0.0, 0.0, 0.0)


def test_limits_are_respected_on_a_random_stream(follower) -> None:
    limits = {"max_yaw_rate": 0.4, "max_forward_speed": 0.25, "max_reverse_speed": 0.1}
    config = FollowConfig(yaw_gain=20.0, forward_gain=10.0, **limits)
    _, probe = follower(yaw_gain=20.0, forward_gain=10.0, **limits)
    rng = np.random.default_rng(17)
    for _ in range(40):
        width, height = rng.uniform(4, 300), rng.uniform(4, 230)
        box = (rng.uniform(0, IMAGE[0] - width), rng.uniform(0, IMAGE[1] - height), width, height)
        probe.send_expecting(tracked(box), config)
    commands = [as_tuple(c) for c in probe.received()]
    assert all(-0.1 <= f <= 0.25 and abs(yaw) <= 0.4 and tilt == 0.0 for f, tilt, yaw in commands)
    assert {max(f for f, _, _ in commands), min(f for f, _, _ in commands)} == {0.25, -0.1}
    assert {max(y for _, _, y in commands), min(y for _, _, y in commands)} == {0.4, -0.4}


def test_pan_tilt_mode_and_stamped_output(follower) -> None:
    _, probe = follower(stamped=True, mode="pan_tilt", frame_id="pan_tilt_base")
    command = probe.send(tracked(centred(30, 30, dx=70, dy=50)), lambda c: c.angular.z != 0.0)
    assert command.linear.x == 0.0 and command.angular.y > 0.0 and command.angular.z < 0.0
    assert probe.stamped_commands[-1].header.frame_id == "pan_tilt_base"


def test_camera_info_sets_the_bearing(follower) -> None:
    _, probe = follower()
    centre = tracked(centred(40, 80))
    assert as_tuple(probe.send_expecting(centre, FollowConfig()))[2] == 0.0  # centred: no turn
    info = CameraInfo(width=640, height=480)  # calibrated at twice the tracked size
    info.k = [500.0, 0.0, 160.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0]  # principal point left of centre

    def turns_right() -> bool:
        probe.info_pub.publish(info)
        mark = len(probe.received())
        probe.object_pub.publish(centre)
        return wait_for(lambda: any(c.angular.z < 0.0 for c in probe.received()[mark:]), 1.0)

    assert wait_for(turns_right, 20.0, period=0.0), "camera_info was not used"


def test_parameters_are_validated_at_runtime(follower) -> None:
    node, probe = follower()
    client = AsyncParameterClient(probe, node.get_fully_qualified_name())
    assert client.wait_for_services(timeout_sec=20.0)
    for bad in (Parameter("yaw_gain", value=50.0), Parameter("mode", value="fly"),
                Parameter("rate", value=5.0)):
        future = client.set_parameters([bad])
        assert wait_for(future.done)
        assert not future.result().results[0].successful, bad.name
    future = client.set_parameters([Parameter("max_yaw_rate", value=0.2)])
    assert wait_for(future.done) and future.result().results[0].successful
    command = probe.send(tracked((300, 100, 10, 40)), lambda c: c.angular.z != 0.0)
    assert command.angular.z == -0.2


@pytest.mark.parametrize(("keep_publishing", "published"), [(False, 2), (True, 4)])
def test_publishes_one_zero_when_stopping_if_told_to_stay_silent(ros_session, keep_publishing: bool,
                                                                 published: int) -> None:
    node = FollowTargetNode(namespace=f"/follow_test_{next(_namespaces)}",  # not spun: no timer
                            parameter_overrides=[Parameter("publish_when_stopped", value=keep_publishing)])
    try:
        node._publish(FollowCommand(forward=0.2, reason="following"))
        for _ in range(3):
            node._publish(FollowCommand.stop("test"))
        assert node.published == published
    finally:
        node.destroy_node()


def test_installed_executable_starts_with_config_and_ends_cleanly_on_double_ctrl_c(ros_session,
                                                                                 tmp_path) -> None:
    if not INSTALLED.exists():
        pytest.skip(f"{INSTALLED} not installed: build the package (./setup.sh)")
    namespace = "/follow_proc"
    probe = CommandProbe(namespace)
    spinner = Spinner(probe)
    log = tmp_path / "follow_target.log"
    with open(log, "w") as out:
        process = subprocess.Popen([str(INSTALLED), "--ros-args", "--params-file", "config/follow.yaml",
                                    "-r", f"__ns:={namespace}"], cwd=ROOT, stdout=out,
                                   stderr=subprocess.STDOUT, env=ros_env(), start_new_session=True)
        try:
            probe.wait_connected()
            assert wait_for(lambda: probe.status().startswith("no tracked object"))
            probe.send(tracked(centred(20, 40, dx=80)), lambda c: c.angular.z < 0.0 and c.linear.x > 0.0)
            mark = len(probe.received())
            process.send_signal(signal.SIGINT)  # as a terminal and ros2 launch both do
            process.send_signal(signal.SIGINT)
            code = process.wait(timeout=30)
            probe.command_after(mark, lambda c: as_tuple(c) == (0.0, 0.0, 0.0))  # the last zero
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            spinner.stop()
            probe.destroy_node()
    output = log.read_text()
    assert code == 0, output
    assert "Traceback" not in output, output
