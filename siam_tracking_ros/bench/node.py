"""Node-level benchmark over real DDS: the tracker node runs as a subprocess; this process publishes
``sensor_msgs/Image`` on the node's ``image`` topic at a fixed rate, starts a target through
``~/init_target`` and receives ``~/tracked_object``.

Latency is reception time minus the image stamp (both from this process's clock; the node copies
the image stamp into the TrackedObject header). Frames the node skips (it keeps only the newest
image) are counted as dropped. The load columns: ``node_received`` = frames that reached the node
(its ``/diagnostics`` counter), ``processed_hz`` = results per second of streaming, ``service_p95_ms``
= round trip of a ``get_parameters`` call made every 100 ms while streaming, RSS at start and end.
A soak run samples the node's RSS (and GPU memory via nvidia-smi) over time.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from siam_tracking_ros.bench.memory import gpu_process_mib, rss_mib

NODE_NAME = "bench_tracker"
IMAGE_TOPIC = "/siam_bench/image"


SOURCE_ROOT = Path(__file__).resolve().parents[2]


def installed_node() -> str | None:
    """The installed ``tracker_node`` executable (colcon overlay), or None when it is not built."""
    candidate = SOURCE_ROOT / "install" / "siam_tracking_ros" / "lib" / "siam_tracking_ros" / "tracker_node"
    if candidate.is_file():
        return str(candidate)
    return shutil.which("tracker_node")


def node_command(executable: str | None) -> list[str]:
    """How to start the node: ``executable`` if given, else this checkout's
    ``siam_tracking_ros.ros.tracker_node`` run by the current Python (the same ``main`` the
    installed executable calls, without needing a rebuild after source changes)."""
    if executable:
        return [executable]
    return [sys.executable, "-m", "siam_tracking_ros.ros.tracker_node"]


def source_node_available() -> bool:
    """Whether this checkout has the tracker node module."""
    return (SOURCE_ROOT / "siam_tracking_ros" / "ros" / "tracker_node.py").is_file()


@dataclass
class NodeBenchResult:
    """One (resolution, rate) run, or a soak run; times in milliseconds."""

    tracker: str
    resolution: str
    rate_hz: float
    published: int
    received: int
    dropped: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    node_latency_p50_ms: float | None
    node_dropped_frames: int | None
    node_received: int | None = None
    processed_hz: float | None = None
    service_p50_ms: float | None = None
    service_p95_ms: float | None = None
    rss_start_mib: float | None = None
    rss_end_mib: float | None = None
    memory: list[dict[str, float | None]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_image_messages(frames: list[np.ndarray], resolution: tuple[int, int]) -> list[bytearray]:
    """Serialized ``bgr8`` Image messages of the frames resized to ``resolution`` (W, H), built once.

    Publishing serialized bytes with the stamp patched in (:meth:`BenchClient.publish`) costs a copy,
    where serializing a 1080p Image from Python costs ~10 ms: the publisher loads the machine about as
    little as a camera driver would, and the node's numbers are the node's.
    """
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    messages = []
    for frame in frames:
        image = cv2.resize(frame, resolution, interpolation=cv2.INTER_LINEAR)
        msg = Image(height=image.shape[0], width=image.shape[1], encoding="bgr8", is_bigendian=0,
                    step=image.shape[1] * 3)
        msg.header.frame_id = "bench_camera"
        msg.data = image.tobytes()
        messages.append(bytearray(serialize_message(msg)))
    return messages


class NodeProcess:
    """The tracker node as a child process, with its ``image`` topic remapped and a fixed name."""

    def __init__(self, tracker: str, device: str, extra_args: list[str], log_path: Path,
                 executable: str | None = None) -> None:
        if executable is None and not source_node_available():
            raise FileNotFoundError("siam_tracking_ros/ros/tracker_node.py is missing: no node to benchmark")
        env = dict(os.environ)
        if executable is None:  # the source tree first; extend_path still finds the built msg/srv
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SOURCE_ROOT), env.get("PYTHONPATH")) if p)
        command = [*node_command(executable), "--ros-args", "-r", f"__node:={NODE_NAME}",
                   "-r", f"image:={IMAGE_TOPIC}", "-p", f"tracker:={tracker}", "-p", f"device:={device}",
                   *extra_args]
        self.command = command
        self.log = log_path.open("w")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True, env=env)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


class BenchClient:
    """rclpy side: image publisher, TrackedObject subscriber and init_target client."""

    def __init__(self) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from siam_tracking_ros.msg import TrackedObject
        from siam_tracking_ros.srv import InitTarget

        self._owns_rclpy = not rclpy.ok()
        if self._owns_rclpy:
            rclpy.init()
        self.node = rclpy.create_node("siam_bench")
        # reliable publisher: matches reliable and best-effort subscriptions
        self.publisher = self.node.create_publisher(
            Image, IMAGE_TOPIC, QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        # best-effort subscription: matches reliable and best-effort publishers
        self.subscription = self.node.create_subscription(
            TrackedObject, f"/{NODE_NAME}/tracked_object", self._on_result,
            QoSProfile(depth=50, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT))
        self.client = self.node.create_client(InitTarget, f"/{NODE_NAME}/init_target")
        self.InitTarget = InitTarget
        self.lock = threading.Lock()
        self.received: dict[int, tuple[float, Any]] = {}
        self.diagnostics: dict[str, str] = {}
        self.diagnostics_count = 0
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        from rclpy.parameter_client import AsyncParameterClient

        self.parameters = AsyncParameterClient(self.node, NODE_NAME)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def _on_result(self, msg: Any) -> None:
        arrival = self.now_ns()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self.lock:
            self.received[stamp] = (arrival, msg)

    def _on_diagnostics(self, msg: Any) -> None:
        for status in msg.status:
            if f"/{NODE_NAME}:" in status.name:
                with self.lock:
                    self.diagnostics = {kv.key: kv.value for kv in status.values}
                    self.diagnostics_count += 1

    def node_counter(self, key: str, timeout: float = 5.0) -> int | None:
        """A counter from the node's next ``/diagnostics`` message (None when none comes)."""
        with self.lock:
            seen = self.diagnostics_count
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.diagnostics_count > seen and key in self.diagnostics:
                    return int(self.diagnostics[key])
            time.sleep(0.02)
        return None

    def service_round_trip_ms(self, timeout: float = 5.0) -> float | None:
        """Milliseconds for one ``get_parameters`` call on the node (None on timeout)."""
        started = time.monotonic()
        future = self.parameters.get_parameters(["tracker"])
        while not future.done() and time.monotonic() - started < timeout:
            time.sleep(0.001)
        return (time.monotonic() - started) * 1e3 if future.done() else None

    def publish(self, serialized: bytearray) -> int:
        """Publish a serialized Image (from :func:`make_image_messages`) stamped now; the stamp (ns)."""
        stamp = self.now_ns()
        sec, nanosec = divmod(stamp, 1_000_000_000)
        order = "<" if serialized[1] & 1 else ">"  # CDR encapsulation: little or big endian
        struct.pack_into(order + "iI", serialized, 4, sec, nanosec)  # header.stamp comes first
        self.publisher.publish(bytes(serialized))
        return stamp

    def init_target(self, box: np.ndarray, stamp_ns: int = 0, timeout: float = 60.0) -> tuple[bool, str]:
        """Call ``~/init_target`` on the buffered frame with ``stamp_ns`` (0: the newest)."""
        if not self.client.wait_for_service(timeout_sec=timeout):
            return False, "init_target service did not appear"
        request = self.InitTarget.Request()
        request.x, request.y, request.width, request.height = (float(v) for v in box)
        request.stamp.sec, request.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        future = self.client.call_async(request)
        deadline = time.monotonic() + timeout
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not future.done():
            return False, "init_target timed out"
        response = future.result()
        return bool(response.success), str(response.message)

    def clear(self) -> None:
        with self.lock:
            self.received.clear()

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        if self._owns_rclpy:
            rclpy.try_shutdown()


def start_target(client: BenchClient, first_frame: Any, box: np.ndarray, timeout: float = 180.0,
                 alive: Any = lambda: True) -> tuple[bool, str]:
    """Publish ``first_frame`` and ask the node to track ``box`` in it, retrying while the node
    starts up or loads its model in the background."""
    deadline = time.monotonic() + timeout
    message = "no answer"
    while time.monotonic() < deadline and alive():
        stamp = client.publish(first_frame)
        time.sleep(0.2)
        ok, message = client.init_target(box, stamp, timeout=max(1.0, deadline - time.monotonic()))
        if ok:
            return True, message
        time.sleep(0.5)
    return False, message


def _percentile(values: np.ndarray, q: float) -> float | None:
    return float(np.percentile(values, q)) if values.size else None


class ServiceProber:
    """Calls a node service every ``period`` seconds in a thread and keeps the round trips (ms)."""

    def __init__(self, client: BenchClient, period: float = 0.1) -> None:
        self.client, self.period = client, period
        self.times: list[float] = []
        self.timeouts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ServiceProber:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10.0)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            elapsed = self.client.service_round_trip_ms()
            if elapsed is None:
                self.timeouts += 1
            else:
                self.times.append(elapsed)


def publish_stream(client: BenchClient, messages: list[Any], count: int, rate_hz: float,
                   node_pid: int | None = None, sample_every_s: float = 0.0
                   ) -> tuple[list[int], list[dict[str, float | None]]]:
    """Publish ``count`` frames at ``rate_hz`` (ping-pong through ``messages`` so motion stays
    continuous); optionally sample the node's memory every ``sample_every_s`` seconds."""
    period = 1.0 / rate_hz
    order = list(range(len(messages))) + list(range(len(messages) - 2, 0, -1)) or [0]
    stamps: list[int] = []
    samples: list[dict[str, float | None]] = []
    start = time.monotonic()
    next_sample = start
    schedule = start
    for index in range(count):
        delay = schedule + index * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -period:  # fell behind (a busy machine): keep the rate, do not burst
            schedule -= delay
        stamps.append(client.publish(messages[order[index % len(order)]]))
        if node_pid is not None and sample_every_s > 0 and time.monotonic() >= next_sample:
            samples.append({"t_s": time.monotonic() - start, "frame": index, "rss_mib": rss_mib(node_pid),
                            "gpu_mib": gpu_process_mib(node_pid)})
            next_sample += sample_every_s
    return stamps, samples


def summarize_stream(tracker: str, resolution: tuple[int, int], rate_hz: float, client: BenchClient,
                     stamps: list[int], samples: list[dict[str, float | None]],
                     service_ms: list[float] | None = None) -> NodeBenchResult:
    """Match received results to published stamps and summarise latency, drops and service times."""
    with client.lock:
        received = {s: client.received[s] for s in stamps if s in client.received}
    latency = np.asarray([(arrival - stamp) / 1e6 for stamp, (arrival, _) in received.items()])
    node_latency = np.asarray([msg.latency_ms for _, msg in received.values()])
    last = max(received.values(), key=lambda v: v[0])[1] if received else None
    seconds = (stamps[-1] - stamps[0]) / 1e9 if len(stamps) > 1 else 0.0
    service = np.asarray(service_ms or [])
    return NodeBenchResult(
        tracker=tracker, resolution=f"{resolution[0]}x{resolution[1]}", rate_hz=rate_hz,
        published=len(stamps), received=len(received), dropped=len(stamps) - len(received),
        latency_p50_ms=_percentile(latency, 50), latency_p95_ms=_percentile(latency, 95),
        latency_p99_ms=_percentile(latency, 99),
        latency_max_ms=float(latency.max()) if latency.size else None,
        node_latency_p50_ms=_percentile(node_latency, 50),
        node_dropped_frames=int(last.dropped_frames) if last is not None else None,
        processed_hz=len(received) / seconds if seconds > 0 else None,
        service_p50_ms=_percentile(service, 50), service_p95_ms=_percentile(service, 95),
        memory=samples)


def memory_drift(samples: list[dict[str, float | None]], key: str = "rss_mib") -> float | None:
    """Median of the last quarter of samples minus the median of the second quarter (MiB); the
    first quarter is warm-up. None with fewer than 8 samples."""
    values = [s[key] for s in samples if s.get(key) is not None]
    if len(values) < 8:
        return None
    quarter = len(values) // 4
    return float(np.median(values[-quarter:]) - np.median(values[quarter:2 * quarter]))
