"""ROS side of the tracker node, shared by the plain node and the lifecycle node.

:class:`TrackerRuntime` wires the parts of the node together and runs the worker thread that
tracks the newest frame. Each part has one job:

- :mod:`.node_params`: declaring, validating and applying parameters (reloads included),
  with the values given at start from :mod:`.given_parameters`;
- :mod:`.node_entities`: the subscriptions, publishers, services and timers, and their removal;
- :mod:`.intake`: parsing and decoding images; :mod:`.tracking_core`: the tracking logic (no ROS);
- :mod:`.tracking_outputs`: the messages of one frame; :mod:`.node_diagnostics`: ``/diagnostics``;
- :mod:`.target_services`: ``~/init_target`` and ``~/init_box``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger

from siam_tracking_ros.ros.image_conversion import ImageConversionError
from siam_tracking_ros.ros.intake import Frame, ImageIntake, OversizedImageError, stamp_ns
from siam_tracking_ros.ros.node_diagnostics import TrackerDiagnostics
from siam_tracking_ros.ros.node_entities import NodeEntities, PublisherKind, plain_publishers
from siam_tracking_ros.ros.node_log import NodeLog
from siam_tracking_ros.ros.node_params import SWITCH_TIMEOUT_S, ParameterHandler
from siam_tracking_ros.ros.target_services import TargetServices
from siam_tracking_ros.ros.tracking_core import (
    FrameBuffer,
    LatestSlot,
    RateStats,
    StepOutcome,
    StreamMonitor,
    TargetState,
    TrackingEngine,
)
from siam_tracking_ros.ros.tracking_outputs import TrackingOutputs

__all__ = ["SWITCH_TIMEOUT_S", "TrackerRuntime", "stamp_ns"]

#: a stamp further than this from the node clock is from another clock; latency falls back to receive time
MAX_PLAUSIBLE_LATENCY_MS = 60_000.0
#: requests a service keeps queued (a burst of init_target calls from a GUI or detector)
SERVICE_QUEUE_DEPTH = 1000


class TrackerRuntime(ParameterHandler):
    """Everything the tracker node does, attached to ``node`` (a ``Node`` or a ``LifecycleNode``).

    ``outputs`` makes the output publishers (default: plain ones; the lifecycle node passes
    :func:`~.node_entities.lifecycle_publishers`, which publish only while it is active).
    """

    def __init__(self, node: Node, outputs: PublisherKind | None = None) -> None:
        self.node = node
        self.log = node.get_logger()
        self.node_log = NodeLog(self.log)
        self.output_kind = outputs or plain_publishers(node)
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
        self.entities = NodeEntities(node)
        self.outputs: TrackingOutputs | None = None
        self.diagnostics: TrackerDiagnostics | None = None
        self.targets = TargetServices(self)
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        node.add_on_set_parameters_callback(self._on_set_parameters)

    @property
    def received(self) -> int:
        """Frames received so far."""
        return self.stream.received

    @property
    def compressed(self) -> bool:
        return self.intake.compressed

    @property
    def pub_object(self) -> Any:
        """The ``~/tracked_object`` publisher (after :meth:`create_entities`)."""
        return self.outputs.object

    @property
    def pub_debug(self) -> Any:
        """The ``~/debug_image`` publisher (after :meth:`create_entities`)."""
        return self.outputs.debug

    # --- logging --------------------------------------------------------------------------------
    def _engine_log(self, level: str, text: str) -> None:
        self.node_log.at(level, text)

    def _log_at(self, level: str, text: str) -> None:
        self.node_log.at(level, text)

    def _warn_throttled(self, text: str, key: str = "frames", period: float = 2.0) -> None:
        self.node_log.warn_throttled(text, key, period)

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

    def load_model(self, timeout: float = SWITCH_TIMEOUT_S) -> str | None:
        """Load the model the parameters name and wait for it; why it is not running, or None."""
        request = self.model_request()
        self._load(request)
        if not self.engine.wait_idle(timeout):
            return f"loading {request.describe()} takes longer than {timeout:.0f} s"
        if self.engine.tracker is None or self.engine.loaded != request:
            return self.engine.load_error or f"{request.describe()} did not load"
        return None

    def model_unavailable(self, timeout: float = SWITCH_TIMEOUT_S) -> str | None:
        """Why no model can track now (waiting up to ``timeout`` s for a load in progress), or None."""
        if not self.engine.wait_idle(timeout):
            return f"the model is still loading after {timeout:.0f} s"
        if self.engine.tracker is None:
            return f"no model loaded: {self.engine.load_error or 'not configured'}"
        return None

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
        entities = self.entities
        image_group, service_group = MutuallyExclusiveCallbackGroup(), MutuallyExclusiveCallbackGroup()
        self.image_topic = "image/compressed" if self.compressed else "image"
        entities.subscription(CompressedImage if self.compressed else Image, self.image_topic,
                              self._on_image, self._image_qos(), callback_group=image_group, raw=True)
        self.outputs = TrackingOutputs(entities, self.output_kind)
        self.diagnostics = TrackerDiagnostics(self, entities, self._param("diagnostics_period"))
        service_qos = QoSProfile(depth=SERVICE_QUEUE_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
        self.targets.create(entities, service_qos, service_group)
        entities.service(Trigger, "~/reset", self._on_reset, qos_profile=service_qos,
                         callback_group=service_group)
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
        self.entities.destroy_all()
        self.outputs = self.diagnostics = None
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
        self.outputs.publish(frame.image.header, image, outcome, size, latency_ms, self.slot.dropped,
                             self.stats.fps())

    # --- services -------------------------------------------------------------------------------
    def init_target(self, box: tuple[float, float, float, float], stamp: int = 0,
                    tracker: str = "") -> tuple[bool, str]:
        """What ``~/init_target`` does (:class:`~.target_services.TargetServices`)."""
        return self.targets.init_target(box, stamp, tracker)

    def _on_reset(self, request: Any, response: Any) -> Any:
        response.success, response.message = self.engine.reset()
        if response.success:
            self.slot.clear()
        self._log_at("info" if response.success else "warn", f"reset: {response.message}")
        return response
