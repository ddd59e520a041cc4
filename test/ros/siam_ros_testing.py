"""Helpers for the rclpy tests (imported by test modules; conftest.py sets the environment first)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SIAM_SHARED_DIR", ROOT.parent / "shared")).resolve()
NANOTRACK_V2 = SHARED / "data" / "weights" / "nanotrack" / "pretrained" / "nanotrackv2.pth"
SEQUENCES = SHARED / "data" / "sequences"


def nanotrack_available() -> tuple[bool, str]:
    """Whether the real nanotrack variant and its shared weights can be used."""
    if not NANOTRACK_V2.is_file():
        return False, f"{NANOTRACK_V2} not present"
    from siam_tracking_ros.trackers import list_trackers

    if "nanotrack" not in list_trackers():
        return False, "siam_tracking_ros.trackers.nanotrack is not there yet"
    return True, ""


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, period: float = 0.01) -> bool:
    """Poll ``predicate`` until it holds; False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period)
    return predicate()


class Probe(Node):
    """The test's side of the wire: publishes frames, records outputs, calls services."""

    def __init__(self, target: str = "/tracker_node", image_topic: str = "/image",
                 reliable_images: bool = True) -> None:
        super().__init__("probe")
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import Image
        from siam_tracking_ros.msg import TrackedObject
        from siam_tracking_ros.srv import InitTarget
        from std_srvs.srv import Trigger

        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE if reliable_images
                         else ReliabilityPolicy.BEST_EFFORT)
        self.image_pub = self.create_publisher(Image, image_topic, qos)
        self.objects: list = []
        self.masks: list = []
        self.diagnostics: list = []
        self._lock = threading.Lock()
        self.objects_sub = self.create_subscription(TrackedObject, f"{target}/tracked_object",
                                                    self._keep(self.objects), 100)
        self.create_subscription(Image, f"{target}/mask", self._keep(self.masks), 100)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._keep(self.diagnostics), 10)
        self.init_client = self.create_client(InitTarget, f"{target}/init_target")
        self.reset_client = self.create_client(Trigger, f"{target}/reset")
        self.target = target
        self.base_ns = 0
        self.new_run()

    def new_run(self) -> None:
        """Start a fresh run: new stamps (near the current time), recorded outputs cleared."""
        self.base_ns = time.time_ns()
        with self._lock:
            self.objects.clear()
            self.masks.clear()

    def stamp_of(self, index: int):
        """The stamp of frame ``index`` in this run (base + index ms)."""
        from builtin_interfaces.msg import Time

        total = self.base_ns + index * 1_000_000
        return Time(sec=total // 1_000_000_000, nanosec=total % 1_000_000_000)

    def _keep(self, store: list) -> Callable:
        def callback(msg) -> None:
            with self._lock:
                store.append(msg)
        return callback

    def publish_frame(self, frame: np.ndarray, index: int, encoding: str = "bgr8",
                      frame_id: str = "camera") -> None:
        from siam_tracking_ros.ros.image_conversion import cv2_to_imgmsg

        msg = cv2_to_imgmsg(frame, encoding)
        msg.header.stamp = self.stamp_of(index)
        msg.header.frame_id = frame_id
        self.image_pub.publish(msg)

    def objects_for(self, index: int) -> list:
        stamp = self.stamp_of(index)
        with self._lock:
            return [o for o in self.objects
                    if o.header.stamp.sec == stamp.sec and o.header.stamp.nanosec == stamp.nanosec]

    def call(self, client, request, timeout: float = 60.0):
        """Call a service and wait for its answer (the node's init/reset never wait for a running
        track(): a missing answer is a bug, not a slow machine)."""
        assert client.wait_for_service(timeout_sec=20.0), f"service {client.srv_name} not available"
        future = client.call_async(request)
        assert wait_for(future.done, timeout), f"no answer from {client.srv_name}"
        return future.result()

    def init_target(self, box, index: int | None = None, tracker: str = "", timeout: float = 60.0):
        from siam_tracking_ros.srv import InitTarget

        request = InitTarget.Request()
        request.x, request.y, request.width, request.height = (float(v) for v in box)
        if index is not None:
            request.stamp = self.stamp_of(index)
        request.tracker = tracker
        return self.call(self.init_client, request, timeout)

    def reset(self):
        from std_srvs.srv import Trigger

        return self.call(self.reset_client, Trigger.Request())

    def wait_subscribers(self, timeout: float = 20.0) -> None:
        assert wait_for(lambda: self.image_pub.get_subscription_count() > 0, timeout), \
            "the node never subscribed to the image topic"
        assert wait_for(lambda: self.objects_sub.get_publisher_count() > 0, timeout), \
            "the node's tracked_object publisher was never discovered"

    def send_and_wait(self, frame: np.ndarray, index: int, timeout: float = 20.0):
        """Publish frame ``index`` and wait for its TrackedObject (lock-step: nothing dropped)."""
        self.publish_frame(frame, index)
        assert wait_for(lambda: bool(self.objects_for(index)), timeout), f"no result for frame {index}"
        return self.objects_for(index)[-1]

    def latest_diagnostics(self) -> dict[str, str]:
        with self._lock:
            if not self.diagnostics:
                return {}
            status = self.diagnostics[-1].status[0]
        return {kv.key: kv.value for kv in status.values} | {"_message": status.message}


class Spinner:
    """Spins nodes on a multi-threaded executor in a background thread.

    The executor is the node executables' :class:`~siam_tracking_ros.ros.tracker_node.ResilientExecutor`:
    tests destroy subscriptions and publishers from their own thread while this one spins, and
    rclpy's own executor ends its ``spin()`` with ``InvalidHandle`` when such a destruction lands
    while it builds its wait set (ros2/rclpy#1284); every node on it then stops answering.
    """

    def __init__(self, *nodes: Node) -> None:
        from siam_tracking_ros.ros.tracker_node import ResilientExecutor

        self.executor = ResilientExecutor(num_threads=4)
        for node in nodes:
            self.executor.add_node(node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.executor.shutdown(timeout_sec=5.0)
        self.thread.join(timeout=5.0)


def change_state(probe: Probe, node_name: str, transition: str, timeout: float = 60.0) -> bool:
    """Ask lifecycle node ``node_name`` for ``transition`` (``configure``, ``activate``, ...)."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    client = probe.create_client(ChangeState, f"/{node_name}/change_state")
    request = ChangeState.Request()
    request.transition.id = getattr(Transition, f"TRANSITION_{transition.upper()}")
    answer = probe.call(client, request, timeout=timeout)
    probe.destroy_client(client)
    return answer.success


def current_state(probe: Probe, node_name: str) -> str:
    """The label of lifecycle node ``node_name``'s state (``unconfigured``, ``inactive``, ...)."""
    from lifecycle_msgs.srv import GetState

    client = probe.create_client(GetState, f"/{node_name}/get_state")
    answer = probe.call(client, GetState.Request())
    probe.destroy_client(client)
    return answer.current_state.label


def iou(a, b) -> float:
    from siam_tracking_ros.core.geometry import iou_xywh

    return float(iou_xywh(np.asarray(a, float), np.asarray(b, float)))


def ros_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a child ROS process: same domain/discovery/log dir, bootstrap vars kept consistent."""
    env = dict(os.environ)
    # the ROS wheels' bootstrap re-execs Python with LD_LIBRARY_PATH; pass both or neither
    if "_ROS_WHEELS_BOOTSTRAP_COMPLETE" in env and "LD_LIBRARY_PATH" not in env:
        env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE")
    env.update(extra or {})
    return env
