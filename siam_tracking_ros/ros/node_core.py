"""ROS side of the tracker node, shared by the plain node and the lifecycle node.

:class:`TrackerRuntime` declares the parameters (:mod:`.node_params`), creates the subscriptions,
publishers and services on a given node, runs the worker thread that tracks the newest frame, and
publishes the results. The tracking logic itself lives in :mod:`.tracking_core` (no ROS there),
the image intake in :mod:`.intake`.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point32
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, RegionOfInterest
from std_msgs.msg import Float32
from std_srvs.srv import Trigger

from siam_tracking_ros.msg import TrackedObject
from siam_tracking_ros.ros.image_conversion import ImageConversionError, cv2_to_imgmsg
from siam_tracking_ros.ros.intake import Frame, ImageIntake, OversizedImageError, stamp_ns
from siam_tracking_ros.ros.node_params import SWITCH_TIMEOUT_S, ParameterHandler
from siam_tracking_ros.ros.overlay import draw_tracking
from siam_tracking_ros.ros.tracking_core import (
    FrameBuffer,
    LatestSlot,
    RateStats,
    StepOutcome,
    StreamMonitor,
    TargetState,
    TrackingEngine,
)
from siam_tracking_ros.srv import InitTarget

__all__ = ["SWITCH_TIMEOUT_S", "TrackerRuntime", "stamp_ns"]

#: a stamp further than this from the node clock is from another clock; latency falls back to receive time
MAX_PLAUSIBLE_LATENCY_MS = 60_000.0
#: requests a service keeps queued (a burst of init_target calls from a GUI or detector)
SERVICE_QUEUE_DEPTH = 1000
#: share of frames missing in the publication sequence numbers above which diagnostics warn
LOSS_WARN_FRACTION = 0.05


def _finite(value: float, default: float = 0.0) -> float:
    value = float(value)
    return value if math.isfinite(value) else default


class TrackerRuntime(ParameterHandler):
    """Everything the tracker node does, attached to ``node`` (a ``Node`` or a ``LifecycleNode``)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.log = node.get_logger()
        self.configured = False
        self._init_parameters()
        self.engine = TrackingEngine(self._policy_from_params(), log=self._engine_log,
                                     threads=self._param("threads"))
        self.intake = ImageIntake(self._param("image_transport") == "compressed",
                                  self._param("max_image_pixels"))
        self.buffer = FrameBuffer(self._param("frame_buffer_size"))
        self.slot = LatestSlot()
        self.stats = RateStats()
        self.stream = StreamMonitor()
        self.bad_frames = 0
        self.oversized_frames = 0
        self.active = False
        self._declare_tracker_params(self._param("tracker"), self._param("weights"))
        self._entities: list[Any] = []
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_warning: dict[str, float] = {}
        node.add_on_set_parameters_callback(self._on_set_parameters)

    @property
    def received(self) -> int:
        """Frames received so far."""
        return self.stream.received

    @property
    def compressed(self) -> bool:
        return self.intake.compressed

    # --- logging --------------------------------------------------------------------------------
    def _engine_log(self, level: str, text: str) -> None:
        self._log_at(level, text)

    def _log_at(self, level: str, text: str) -> None:
        """Log at a severity chosen at run time (rclpy wants one severity per call site)."""
        if level == "error":
            self.log.error(text)
        elif level == "warn":
            self.log.warning(text)
        else:
            self.log.info(text)

    def _warn_throttled(self, text: str, key: str = "frames", period: float = 2.0) -> None:
        now = time.monotonic()
        if now - self._last_warning.get(key, -math.inf) >= period:
            self._last_warning[key] = now
            self.log.warning(text)

    # --- model ----------------------------------------------------------------------------------
    def _newest_frame(self) -> np.ndarray | None:
        newest = self.buffer.newest()
        if newest is None:
            return None
        try:
            return self.intake.decode(newest[1].image)
        except ImageConversionError:
            return None

    def start_model(self) -> None:
        """Load the model the parameters name (in the background)."""
        self._load(self.model_request())

    # --- entities -------------------------------------------------------------------------------
    def _image_qos(self) -> QoSProfile:
        reliability = (ReliabilityPolicy.RELIABLE if self._param("image_reliability") == "reliable"
                       else ReliabilityPolicy.BEST_EFFORT)
        return QoSProfile(depth=qos_profile_sensor_data.depth, reliability=reliability,
                          durability=qos_profile_sensor_data.durability,
                          history=qos_profile_sensor_data.history)

    def create_entities(self) -> None:
        """Subscriptions, publishers, services, timer and the worker thread.

        Callback groups: images, services (init/reset/init_box) and the diagnostics timer each have
        their own, and parameter services keep the node's default one, so each answers while the
        others are busy (the executable spins them on a multi-threaded executor).
        """
        node = self.node
        image_group, service_group = MutuallyExclusiveCallbackGroup(), MutuallyExclusiveCallbackGroup()
        self.image_topic = "image/compressed" if self.compressed else "image"
        sub = node.create_subscription(CompressedImage if self.compressed else Image, self.image_topic,
                                       self._on_image, self._image_qos(), callback_group=image_group,
                                       raw=True)
        self.pub_object = node.create_publisher(TrackedObject, "~/tracked_object", 10)
        self.pub_mask = node.create_publisher(Image, "~/mask", 2)
        self.pub_confidence = node.create_publisher(Float32, "~/confidence", 10)
        self.pub_debug = node.create_publisher(Image, "~/debug_image", 2)
        self.pub_diagnostics = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        service_qos = QoSProfile(depth=SERVICE_QUEUE_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
        services = [
            node.create_service(InitTarget, "~/init_target", self._on_init_target,
                                qos_profile=service_qos, callback_group=service_group),
            node.create_service(Trigger, "~/reset", self._on_reset, qos_profile=service_qos,
                                callback_group=service_group),
        ]
        box_sub = node.create_subscription(RegionOfInterest, "~/init_box", self._on_init_box, 10,
                                           callback_group=service_group)
        timer = node.create_timer(self._param("diagnostics_period"), self._publish_diagnostics,
                                  callback_group=MutuallyExclusiveCallbackGroup())
        self._entities = [sub, box_sub, *services, timer, self.pub_object, self.pub_mask,
                          self.pub_confidence, self.pub_debug, self.pub_diagnostics]
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="tracker-worker", daemon=True)
        self._worker.start()
        self.configured = True

    def destroy_entities(self) -> None:
        """Stop the worker and destroy what :meth:`create_entities` made."""
        self.configured = False
        self.active = False
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
            self._worker = None
        node = self.node
        destroyers = {"Subscription": node.destroy_subscription, "Publisher": node.destroy_publisher,
                      "Service": node.destroy_service, "Timer": node.destroy_timer}
        for entity in self._entities:
            destroy = next((f for kind, f in destroyers.items() if kind in type(entity).__name__), None)
            if destroy is not None:
                destroy(entity)
        self._entities = []
        self.slot.clear()
        self.buffer.clear()

    def set_active(self, active: bool) -> None:
        """Process and publish frames only while active."""
        self.active = active
        if not active:
            self.slot.clear()

    # --- input ----------------------------------------------------------------------------------
    def _on_image(self, data: Any, info: dict) -> None:
        """Store the (still serialized) frame; nothing is decoded here."""
        received = time.monotonic()
        try:
            image, stamp = self.intake.parse(data)
        except ImageConversionError as exc:
            self.bad_frames += 1
            self._warn_throttled(f"skipping bad image on {self.image_topic}: {exc}")
            return
        publisher = (info.get("publisher_gid") or {}).get("data")
        arrival, warning = self.stream.receive(stamp, publisher, info.get("publication_sequence_number"),
                                               received)
        if warning:
            self._warn_throttled(warning, key="stamps", period=5.0)
        frame = Frame(image, stamp, received, arrival)
        self.buffer.push(stamp, frame)
        if self.active:
            self.slot.put(frame)

    def _decode(self, frame: Frame, check_only: bool = False) -> Any:
        """The BGR image of ``frame`` (or, ``check_only``, its ``(width, height)``); None (counted
        and warned) when it cannot be used."""
        try:
            result = self.intake.check(frame.image) if check_only else self.intake.decode(frame.image)
        except ImageConversionError as exc:
            self.bad_frames += 1
            self.oversized_frames += isinstance(exc, OversizedImageError)
            self._warn_throttled(f"skipping bad image on {self.image_topic}: {exc}")
            return None
        while self.intake.notes:
            self.log.info(self.intake.notes.pop())
        return result

    def _work(self) -> None:
        while not self._stop.is_set():
            frame = self.slot.take(timeout=0.1)
            if frame is None or not self.active or self.engine.is_stale(frame.arrival):
                continue  # stale: arrived before the frame the target was initialised on
            try:
                self._process(frame)
            except Exception as exc:  # publishing during shutdown
                if not self._stop.is_set():
                    self.log.error(f"publishing failed: {exc}")

    def _process(self, frame: Frame) -> None:
        """Track ``frame`` and publish; with no target it is not even decoded (unless drawn)."""
        if self.engine.state == TargetState.IDLE and self.pub_debug.get_subscription_count() == 0:
            size = self._decode(frame, check_only=True)
            if size is not None:
                loaded = self.engine.loaded
                self._publish(frame, None, StepOutcome(TargetState.IDLE, None, 0, 0,
                                                       loaded.tracker if loaded else ""), size)
            return
        image = self._decode(frame)
        if image is None:
            return
        outcome = self.engine.step(image, frame.arrival)
        if outcome is not None:
            self._publish(frame, image, outcome, (int(image.shape[1]), int(image.shape[0])))

    # --- output ---------------------------------------------------------------------------------
    def _latency_ms(self, frame: Frame) -> tuple[float, float]:
        processing_ms = (time.monotonic() - frame.received) * 1e3
        latency_ms = (self.node.get_clock().now().nanoseconds - frame.stamp_ns) / 1e6
        if not 0.0 <= latency_ms <= MAX_PLAUSIBLE_LATENCY_MS:
            latency_ms = processing_ms  # zero stamp or another clock (a replay): receive -> publish
        return latency_ms, processing_ms

    def _publish(self, frame: Frame, image: np.ndarray | None, outcome: StepOutcome,
                 size: tuple[int, int]) -> None:
        latency_ms, processing_ms = self._latency_ms(frame)
        self.stats.add(time.monotonic(), latency_ms, processing_ms)
        header = frame.image.header
        msg = self._tracked_object(header, size, outcome, latency_ms)
        result = outcome.result
        if result is not None and outcome.state == TargetState.TRACKING and result.mask is not None:
            self.pub_mask.publish(cv2_to_imgmsg(np.ascontiguousarray(result.mask, np.uint8), "mono8", header))
            msg.has_mask = True
        if result is not None:
            self.pub_confidence.publish(Float32(data=msg.score))
        self.pub_object.publish(msg)
        if image is not None and self.pub_debug.get_subscription_count() > 0:
            tracking = outcome.state == TargetState.TRACKING and result is not None
            debug = draw_tracking(image, msg.state, outcome.box, msg.score, self.stats.fps(),
                                  result.polygon if tracking else None, result.mask if tracking else None,
                                  outcome.tracker)
            self.pub_debug.publish(cv2_to_imgmsg(debug, "bgr8", header))

    def _tracked_object(self, header: Any, size: tuple[int, int], outcome: StepOutcome,
                        latency_ms: float) -> TrackedObject:
        """The TrackedObject of one frame; every float finite, the box the last confident one if LOST."""
        msg = TrackedObject()
        msg.header = header
        msg.tracker = outcome.tracker
        msg.state = int(outcome.state)
        msg.latency_ms = _finite(latency_ms)
        msg.frame_count, msg.frames_since_seen = outcome.frame_count, outcome.frames_since_seen
        msg.dropped_frames = self.slot.dropped
        msg.image_width, msg.image_height = size
        result = outcome.result
        if result is None:
            return msg
        msg.score = _finite(result.score)
        if outcome.box is not None:
            msg.x, msg.y, msg.width, msg.height = (_finite(v) for v in outcome.box)
        polygon = result.polygon if outcome.state == TargetState.TRACKING else None
        if polygon is not None and np.all(np.isfinite(polygon)):
            msg.polygon.points = [Point32(x=float(px), y=float(py), z=0.0) for px, py in polygon]
        return msg

    def _diagnostic_level(self) -> tuple[int, str]:
        engine = self.engine
        missed, sent = self.stream.recent_loss()
        if engine.tracker is None and not engine.reloading:
            return DiagnosticStatus.ERROR, engine.load_error or "no model"
        if engine.reloading:
            return DiagnosticStatus.WARN, "model loading"
        if self.received == 0:
            return DiagnosticStatus.WARN, f"no images on {self.image_topic} yet"
        if sent and missed > LOSS_WARN_FRACTION * sent:
            text = (f"frames lost on the way: {missed} of the last {sent} published never reached the "
                    "node (DDS transport, or its queue overflowing on an overloaded machine: docs/NODE.md)")
            self._warn_throttled(text, key="loss", period=10.0)
            return DiagnosticStatus.WARN, text
        if engine.state == TargetState.LOST:
            return DiagnosticStatus.WARN, "target lost, searching"
        return DiagnosticStatus.OK, TargetState(engine.state).name

    def _diagnostic_values(self, hardware_id: str) -> dict[str, str]:
        engine, stream, loaded = self.engine, self.stream, self.engine.loaded
        return {
            "state": TargetState(engine.state).name, "variant": loaded.tracker if loaded else "",
            "device": hardware_id, "weights": (loaded.weights or "packaged default") if loaded else "",
            "fps": f"{self.stats.fps():.2f}",
            "latency_p50_ms": f"{self.stats.latency(50):.1f}",
            "latency_p95_ms": f"{self.stats.latency(95):.1f}",
            "processing_p50_ms": f"{self.stats.processing(50):.1f}",
            "processing_p95_ms": f"{self.stats.processing(95):.1f}",
            "received_frames": str(self.received), "processed_frames": str(self.stats.processed),
            "dropped_frames": str(self.slot.dropped), "bad_frames": str(self.bad_frames),
            "oversized_frames": str(self.oversized_frames), "missed_frames": str(stream.missed),
            "stamp_jumps": str(stream.stamp_jumps), "zero_stamps": str(stream.zero_stamps),
            "threads": str(engine.threads.resolved),
            "threads_in_worker": str(engine.threads.in_worker or ""),
            "reloading": str(engine.reloading).lower(), "active": str(self.active).lower(),
            "last_error": engine.load_error or "",
        }

    def _publish_diagnostics(self) -> None:
        status = DiagnosticStatus()
        status.name = f"{self.node.get_fully_qualified_name()}: tracker"
        status.hardware_id = str(self.engine.tracker.device) if self.engine.tracker is not None else "none"
        level, status.message = self._diagnostic_level()
        status.level = bytes([level]) if isinstance(level, int) else level
        values = self._diagnostic_values(status.hardware_id)
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        array = DiagnosticArray()
        array.header.stamp = self.node.get_clock().now().to_msg()
        array.status = [status]
        self.pub_diagnostics.publish(array)

    # --- services -------------------------------------------------------------------------------
    def _frame_for(self, stamp: int) -> tuple[np.ndarray | None, int, str]:
        """``(image, arrival, reason)`` to initialise on: the newest frame (stamp 0) or the newest
        buffered one with exactly ``stamp``."""
        if stamp == 0:
            newest = self.buffer.newest()
            if newest is None:
                return None, -1, f"no image received yet on {self.node.resolve_topic_name(self.image_topic)}"
            frame = newest[1]
        else:
            frame = self.buffer.find(stamp)
            if frame is None:
                span = self.buffer.stamp_range()
                have = f"buffered: {span[0] / 1e9:.3f} .. {span[1] / 1e9:.3f} s" if span else "none buffered"
                return None, -1, f"no buffered frame with stamp {stamp / 1e9:.3f} s ({have})"
        try:
            return self.intake.decode(frame.image), frame.arrival, ""
        except ImageConversionError as exc:
            return None, -1, f"the frame at that stamp cannot be used: {exc}"

    def _switch_tracker(self, name: str) -> str | None:
        """Switch to variant ``name`` with its packaged weights, blocking until loaded; why not, or None."""
        result = self.node.set_parameters_atomically([Parameter("tracker", value=name),
                                                      Parameter("weights", value="")])
        if not result.successful:
            return result.reason
        if not self.engine.wait_idle(SWITCH_TIMEOUT_S):
            return f"loading '{name}' takes longer than {SWITCH_TIMEOUT_S:.0f} s"
        if self.engine.loaded is not None and self.engine.loaded.tracker == name:
            return None
        return self.engine.load_error or f"could not switch to '{name}'"

    def init_target(self, box: tuple[float, float, float, float], stamp: int = 0,
                    tracker: str = "") -> tuple[bool, str]:
        """What ``~/init_target`` does; also used by ``~/init_box``."""
        if not self.active:
            return False, "node is not active"
        if tracker and tracker != self._param("tracker"):
            if self.engine.reloading:
                return False, self.engine.unavailable_reason() or "model is reloading"
            reason = self._switch_tracker(tracker)
            if reason:
                return False, f"cannot switch to '{tracker}': {reason}"
        reason = self.engine.unavailable_reason()
        if reason:
            return False, reason
        image, arrival, reason = self._frame_for(stamp)
        if image is None:
            return False, reason
        return self.engine.init(image, box, arrival)

    def _on_init_target(self, request: Any, response: Any) -> Any:
        box = (request.x, request.y, request.width, request.height)
        response.success, response.message = self.init_target(box, stamp_ns(request.stamp),
                                                               request.tracker.strip())
        self._log_at("info" if response.success else "warn",
                     f"init_target {tuple(round(v, 1) for v in box)}: {response.message}")
        return response

    def _on_init_box(self, msg: RegionOfInterest) -> None:
        box = (float(msg.x_offset), float(msg.y_offset), float(msg.width), float(msg.height))
        ok, message = self.init_target(box)
        self._log_at("info" if ok else "warn", f"init_box {box}: {message}")

    def _on_reset(self, request: Any, response: Any) -> Any:
        response.success, response.message = self.engine.reset()
        if response.success:
            self.slot.clear()
        self._log_at("info" if response.success else "warn", f"reset: {response.message}")
        return response
