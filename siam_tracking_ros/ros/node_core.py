"""ROS side of the tracker node, shared by the plain node and the lifecycle node.

:class:`TrackerRuntime` declares the parameters, creates the subscriptions, publishers and
services on a given node, runs the worker thread that tracks the newest frame, and publishes the
results. The tracking logic itself lives in :mod:`.tracking_core` (no ROS there).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point32
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, RegionOfInterest
from std_msgs.msg import Float32
from std_srvs.srv import Trigger

from siam_tracking_ros.msg import TrackedObject
from siam_tracking_ros.ros import params as P
from siam_tracking_ros.ros.image_conversion import (
    ImageConversionError,
    compressed_imgmsg_to_cv2,
    cv2_to_imgmsg,
    imgmsg_to_bgr8,
)
from siam_tracking_ros.ros.overlay import draw_tracking
from siam_tracking_ros.ros.tracking_core import (
    FrameBuffer,
    LatestSlot,
    LostPolicy,
    ModelRequest,
    RateStats,
    StepOutcome,
    TargetState,
    TrackingEngine,
    config_values,
)
from siam_tracking_ros.srv import InitTarget

#: seconds an init_target that switches the variant waits for the new model
SWITCH_TIMEOUT_S = 300.0
#: a stamp further than this from the node clock is from another clock; latency falls back to receive time
MAX_PLAUSIBLE_LATENCY_MS = 60_000.0


def stamp_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` as integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class TrackerRuntime:
    """Everything the tracker node does, attached to ``node`` (a ``Node`` or a ``LifecycleNode``)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.log = node.get_logger()
        self._declaring = False
        self._declare_node_params()
        self.engine = TrackingEngine(self._policy_from_params(), log=self._engine_log)
        self.buffer = FrameBuffer(self._param("frame_buffer_size"))
        self.slot = LatestSlot()
        self.stats = RateStats()
        self.bad_frames = 0
        self.received = 0
        self.active = False
        self.configured = False
        self._min_stamp = 0
        self._tracker_fields: set[str] = set()
        self._declare_tracker_params(self._param("tracker"), self._param("weights"))
        self._entities: list[Any] = []
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_warning = 0.0
        node.add_on_set_parameters_callback(self._on_set_parameters)

    # --- parameters -----------------------------------------------------------------------------
    def _param(self, name: str) -> Any:
        return self.node.get_parameter(name).value

    def _declare(self, name: str, default: Any, descriptor) -> None:
        """Declare one parameter; a bad override (type, range) is logged and the default used."""
        overrides = getattr(self.node, "_parameter_overrides", {})
        given = overrides.get(name)
        wants_double = isinstance(default, float) or (isinstance(default, Parameter.Type)
                                                      and default == Parameter.Type.DOUBLE)
        if given is not None and wants_double and isinstance(given.value, int) \
                and not isinstance(given.value, bool):
            overrides[name] = Parameter(name, value=float(given.value))  # 1 -> 1.0 for doubles
        try:
            self.node.declare_parameter(name, default, descriptor)
        except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
            self.log.error(f"parameter {name}: {exc}; using the default {default!r}")
            self.node.declare_parameter(name, default, descriptor, ignore_override=True)

    def _declare_node_params(self) -> None:
        for definition in P.NODE_PARAMS:
            self._declare(definition.name, definition.default, definition.descriptor())
            value = self._param(definition.name)
            reason = None if definition.reloads else P.validate_node_param(definition.name, value)
            if reason:
                self.log.error(f"parameter {definition.name}: {reason}; using {definition.default!r}")
                self.node.set_parameters([Parameter(definition.name, value=definition.default)])

    def _declare_tracker_params(self, tracker: str, weights: str, config: Any = None) -> None:
        """Declare ``tracker_params.*`` of ``tracker`` (after undeclaring another variant's)."""
        self._declaring = True
        try:
            for name in sorted(self._tracker_fields):
                self.node.undeclare_parameter(P.PREFIX + name)
            self._tracker_fields = set()
            try:
                config = config if config is not None else P.base_config(tracker, weights)
            except (KeyError, ValueError, TypeError) as exc:
                self.log.warning(f"no tracker_params for '{tracker}': {exc}")
                return
            for item in P.tracker_params(config):
                self._declare(item.name, item.value, item.descriptor)
                self._tracker_fields.add(item.field)
            self._warn_unknown_tracker_overrides(tracker)
        finally:
            self._declaring = False

    def _warn_unknown_tracker_overrides(self, tracker: str) -> None:
        overrides = getattr(self.node, "_parameter_overrides", {})
        unknown = sorted(n for n in overrides
                         if n.startswith(P.PREFIX) and n[len(P.PREFIX):] not in self._tracker_fields)
        if unknown:
            self.log.warning(f"ignoring parameters that '{tracker}' does not have: {', '.join(unknown)}")

    def _tracker_values(self) -> dict[str, Any]:
        return {name: self.node.get_parameter_or(P.PREFIX + name, Parameter(P.PREFIX + name)).value
                for name in self._tracker_fields}

    def _policy_from_params(self) -> LostPolicy:
        return LostPolicy(self._param("score_threshold"), self._param("lost_frames"),
                          self._param("lost_search_scale"))

    def model_request(self, values: dict[str, Any] | None = None) -> ModelRequest:
        """The model the parameters ask for (``values`` overrides current parameter values)."""
        values = values or {}
        get = lambda name: values.get(name, self._param(name))  # noqa: E731
        tracker, weights = get("tracker"), get("weights")
        overrides: tuple = ()
        if tracker == self._param("tracker"):
            hyper = self._tracker_values()
            hyper.update({k[len(P.PREFIX):]: v for k, v in values.items() if k.startswith(P.PREFIX)})
            try:
                overrides = P.overrides_from(hyper, P.base_config(tracker, weights))
            except (KeyError, ValueError, TypeError):
                overrides = ()
        return ModelRequest(tracker, weights, get("device"), bool(get("half")), overrides,
                            cuda_graphs=bool(get("cuda_graphs")))

    def _validate_tracker_param(self, name: str, value: Any) -> str | None:
        field = name[len(P.PREFIX):]
        if field not in self._tracker_fields:
            return f"'{self._param('tracker')}' has no hyper-parameter '{field}'"
        from siam_tracking_ros.trackers import make_config

        tracker = self._param("tracker")
        try:
            base = P.base_config(tracker, self._param("weights"))
            make_config(tracker, config_values(base), **{field: P.coerce_like(value, getattr(base, field))})
        except (TypeError, ValueError) as exc:
            return f"{name}: {exc}"
        return None

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        if self._declaring:
            return SetParametersResult(successful=True)
        changes: dict[str, Any] = {}
        for parameter in parameters:
            name, value = parameter.name, parameter.value
            if name.startswith(P.PREFIX):
                reason = self._validate_tracker_param(name, value)
            else:
                reason = P.validate_node_param(name, value)
            if reason:
                self.log.warning(f"rejected {name}={value!r}: {reason}")
                return SetParametersResult(successful=False, reason=reason)
            changes[name] = value
        self._apply_policy(changes)
        reload_keys = {p.name for p in P.NODE_PARAMS if p.reloads}
        if self.configured and any(k in reload_keys or k.startswith(P.PREFIX) for k in changes):
            request = self.model_request(changes)
            if request != self.engine.loaded or self.engine.load_error:
                self.log.info(f"parameter change: reloading {request.describe()} in the background")
                switching = "tracker" in changes and changes["tracker"] != self._param("tracker")
                self._load(request, redeclare=switching)
        return SetParametersResult(successful=True)

    def _apply_policy(self, changes: dict[str, Any]) -> None:
        policy = self.engine.policy
        policy.score_threshold = float(changes.get("score_threshold", policy.score_threshold))
        policy.lost_frames = int(changes.get("lost_frames", policy.lost_frames))
        policy.lost_search_scale = float(changes.get("lost_search_scale", policy.lost_search_scale))

    # --- model ----------------------------------------------------------------------------------
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

    def _newest_frame(self) -> np.ndarray | None:
        newest = self.buffer.newest()
        if newest is None:
            return None
        try:
            return self._to_bgr(newest[1][0])
        except ImageConversionError:
            return None

    def _load(self, request: ModelRequest, redeclare: bool = False) -> None:
        def done(ok: bool, message: str) -> None:
            if ok and redeclare and self.engine.tracker is not None:
                self._declare_tracker_params(request.tracker, request.weights, self.engine.tracker.config)

        self.engine.request_model(request, self._newest_frame, done)

    def start_model(self) -> None:
        """Load the model the parameters name (in the background)."""
        self._load(self.model_request())

    # --- entities -------------------------------------------------------------------------------
    def create_entities(self) -> None:
        """Subscriptions, publishers, services, timer and the worker thread."""
        node = self.node
        image_group, service_group = MutuallyExclusiveCallbackGroup(), MutuallyExclusiveCallbackGroup()
        reliability = (ReliabilityPolicy.RELIABLE if self._param("image_reliability") == "reliable"
                       else ReliabilityPolicy.BEST_EFFORT)
        image_qos = QoSProfile(depth=qos_profile_sensor_data.depth, reliability=reliability,
                               durability=qos_profile_sensor_data.durability,
                               history=qos_profile_sensor_data.history)
        self.compressed = self._param("image_transport") == "compressed"
        if self.compressed:
            self.image_topic = "image/compressed"
            sub = node.create_subscription(CompressedImage, "image/compressed", self._on_image, image_qos,
                                           callback_group=image_group)
        else:
            self.image_topic = "image"
            sub = node.create_subscription(Image, "image", self._on_image, image_qos,
                                           callback_group=image_group)
        self.pub_object = node.create_publisher(TrackedObject, "~/tracked_object", 10)
        self.pub_mask = node.create_publisher(Image, "~/mask", 2)
        self.pub_confidence = node.create_publisher(Float32, "~/confidence", 10)
        self.pub_debug = node.create_publisher(Image, "~/debug_image", 2)
        self.pub_diagnostics = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        services = [
            node.create_service(InitTarget, "~/init_target", self._on_init_target,
                                callback_group=service_group),
            node.create_service(Trigger, "~/reset", self._on_reset, callback_group=service_group),
        ]
        box_sub = node.create_subscription(RegionOfInterest, "~/init_box", self._on_init_box, 10,
                                           callback_group=service_group)
        timer = node.create_timer(self._param("diagnostics_period"), self._publish_diagnostics)
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
    def _on_image(self, msg: Any) -> None:
        received = time.monotonic()
        self.received += 1
        self.buffer.push(stamp_ns(msg.header.stamp), (msg, received))
        if self.active:
            self.slot.put((msg, received))

    def _to_bgr(self, msg: Any) -> np.ndarray:
        return compressed_imgmsg_to_cv2(msg) if self.compressed else imgmsg_to_bgr8(msg)

    def _warn_throttled(self, text: str, period: float = 2.0) -> None:
        now = time.monotonic()
        if now - self._last_warning >= period:
            self._last_warning = now
            self.log.warning(text)

    def _work(self) -> None:
        while not self._stop.is_set():
            item = self.slot.take(timeout=0.1)
            if item is None or not self.active:
                continue
            msg, received = item
            if stamp_ns(msg.header.stamp) < self._min_stamp:
                continue  # older than the frame the target was initialised on
            try:
                frame = self._to_bgr(msg)
            except ImageConversionError as exc:
                self.bad_frames += 1
                self._warn_throttled(f"skipping bad image on {self.image_topic}: {exc}")
                continue
            outcome = self.engine.step(frame)
            try:
                self._publish(msg.header, frame, outcome, received)
            except Exception as exc:  # publishing during shutdown
                if not self._stop.is_set():
                    self.log.error(f"publishing failed: {exc}")

    # --- output ---------------------------------------------------------------------------------
    def _publish(self, header: Any, frame: np.ndarray, outcome: StepOutcome, received: float) -> None:
        result = outcome.result
        processing_ms = (time.monotonic() - received) * 1e3
        latency_ms = (self.node.get_clock().now().nanoseconds - stamp_ns(header.stamp)) / 1e6
        if not 0.0 <= latency_ms <= MAX_PLAUSIBLE_LATENCY_MS:
            latency_ms = processing_ms  # stamp from another clock (replayed recording): receive -> publish
        self.stats.add(time.monotonic(), latency_ms, processing_ms)
        msg = TrackedObject()
        msg.header = header
        msg.tracker = outcome.tracker
        msg.state = int(outcome.state)
        msg.latency_ms = float(latency_ms)
        msg.frame_count, msg.frames_since_seen = outcome.frame_count, outcome.frames_since_seen
        msg.dropped_frames = self.slot.dropped
        msg.image_height, msg.image_width = int(frame.shape[0]), int(frame.shape[1])
        if result is not None:
            msg.score = float(result.score)
            msg.x, msg.y, msg.width, msg.height = (float(v) for v in result.box)
            if result.polygon is not None:
                msg.polygon.points = [Point32(x=float(px), y=float(py), z=0.0) for px, py in result.polygon]
            if result.mask is not None:
                self.pub_mask.publish(cv2_to_imgmsg(np.ascontiguousarray(result.mask, np.uint8), "mono8",
                                                    header))
                msg.has_mask = True
            self.pub_confidence.publish(Float32(data=float(result.score)))
        self.pub_object.publish(msg)
        if self.pub_debug.get_subscription_count() > 0:
            image = draw_tracking(frame, msg.state, result.box if result else None, msg.score,
                                  self.stats.fps(), result.polygon if result else None,
                                  result.mask if result else None, outcome.tracker)
            self.pub_debug.publish(cv2_to_imgmsg(image, "bgr8", header))

    def _publish_diagnostics(self) -> None:
        engine = self.engine
        status = DiagnosticStatus()
        status.name = f"{self.node.get_fully_qualified_name()}: tracker"
        status.hardware_id = str(engine.tracker.device) if engine.tracker is not None else "none"
        state = TargetState(engine.state).name
        if engine.tracker is None and not engine.reloading:
            status.level, status.message = DiagnosticStatus.ERROR, engine.load_error or "no model"
        elif engine.reloading:
            status.level, status.message = DiagnosticStatus.WARN, "model loading"
        elif self.received == 0:
            status.level, status.message = DiagnosticStatus.WARN, f"no images on {self.image_topic} yet"
        elif engine.state == TargetState.LOST:
            status.level, status.message = DiagnosticStatus.WARN, "target lost, searching"
        else:
            status.level, status.message = DiagnosticStatus.OK, state
        status.level = bytes([status.level]) if isinstance(status.level, int) else status.level
        loaded = engine.loaded
        values = {
            "state": state, "variant": loaded.tracker if loaded else "",
            "device": status.hardware_id, "weights": (loaded.weights or "packaged default") if loaded else "",
            "fps": f"{self.stats.fps():.2f}",
            "latency_p50_ms": f"{self.stats.latency(50):.1f}",
            "latency_p95_ms": f"{self.stats.latency(95):.1f}",
            "processing_p50_ms": f"{self.stats.processing(50):.1f}",
            "processing_p95_ms": f"{self.stats.processing(95):.1f}",
            "received_frames": str(self.received), "processed_frames": str(self.stats.processed),
            "dropped_frames": str(self.slot.dropped), "bad_frames": str(self.bad_frames),
            "reloading": str(engine.reloading).lower(), "active": str(self.active).lower(),
            "last_error": engine.load_error or "",
        }
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        array = DiagnosticArray()
        array.header.stamp = self.node.get_clock().now().to_msg()
        array.status = [status]
        self.pub_diagnostics.publish(array)

    # --- services -------------------------------------------------------------------------------
    def _frame_for(self, stamp: int) -> tuple[np.ndarray | None, int, str]:
        """The frame to initialise on: newest (stamp 0) or the buffered one with ``stamp``."""
        if stamp == 0:
            newest = self.buffer.newest()
            if newest is None:
                return None, 0, f"no image received yet on {self.node.resolve_topic_name(self.image_topic)}"
            found_stamp, item = newest
        else:
            item, found_stamp = self.buffer.find(stamp), stamp
            if item is None:
                span = self.buffer.stamp_range()
                have = f"buffered: {span[0] / 1e9:.3f} .. {span[1] / 1e9:.3f} s" if span else "none buffered"
                return None, 0, f"no buffered frame with stamp {stamp / 1e9:.3f} s ({have})"
        try:
            return self._to_bgr(item[0]), found_stamp, ""
        except ImageConversionError as exc:
            return None, 0, f"the frame at that stamp cannot be used: {exc}"

    def _switch_tracker(self, name: str) -> str | None:
        """Switch to variant ``name`` with its packaged weights, blocking until loaded.

        Returns the reason on failure, after going back to the previous variant and weights.
        """
        previous = [Parameter("tracker", value=self._param("tracker")),
                    Parameter("weights", value=self._param("weights"))]
        result = self.node.set_parameters_atomically([Parameter("tracker", value=name),
                                                      Parameter("weights", value="")])
        if not result.successful:
            return result.reason
        if not self.engine.wait_idle(SWITCH_TIMEOUT_S):
            return f"loading '{name}' takes longer than {SWITCH_TIMEOUT_S:.0f} s"
        if self.engine.loaded is not None and self.engine.loaded.tracker == name:
            return None
        reason = self.engine.load_error or f"could not switch to '{name}'"
        self.node.set_parameters_atomically(previous)
        self.engine.wait_idle(SWITCH_TIMEOUT_S)
        return reason

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
        frame, found_stamp, reason = self._frame_for(stamp)
        if frame is None:
            return False, reason
        ok, message = self.engine.init(frame, box)
        if ok:
            self._min_stamp = found_stamp
        return ok, message

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
