"""The tracker node's status on ``/diagnostics``: model, target state, rates, stream health.

Published every ``diagnostics_period`` seconds on a plain publisher, also while a lifecycle node
is inactive (``active: false``), so that a supervisor sees a configured node that waits.
"""

from __future__ import annotations

from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup

from siam_tracking_ros.ros.node_entities import NodeEntities, plain_publishers
from siam_tracking_ros.ros.tracking_core import TargetState

#: share of frames missing in the publication sequence numbers above which diagnostics warn
LOSS_WARN_FRACTION = 0.05


class TrackerDiagnostics:
    """Reads the state of ``runtime`` (a :class:`~.node_core.TrackerRuntime`) and publishes it."""

    def __init__(self, runtime: Any, entities: NodeEntities, period: float) -> None:
        self.runtime = runtime
        self.publisher = entities.publisher(plain_publishers(runtime.node), DiagnosticArray,
                                            "/diagnostics", 10)
        # a group of its own: the status goes out while the image and service callbacks are busy
        entities.timer(period, self.publish, callback_group=MutuallyExclusiveCallbackGroup())

    def level(self) -> tuple[int, str]:
        """``(level, message)`` of the node now."""
        runtime = self.runtime
        engine = runtime.engine
        missed, sent = runtime.stream.recent_loss()
        if engine.tracker is None and not engine.reloading:
            return DiagnosticStatus.ERROR, engine.load_error or "no model"
        if engine.reloading:
            return DiagnosticStatus.WARN, "model loading"
        if runtime.received == 0:
            return DiagnosticStatus.WARN, f"no images on {runtime.image_topic} yet"
        if sent and missed > LOSS_WARN_FRACTION * sent:
            text = (f"frames lost on the way: {missed} of the last {sent} published never reached the "
                    "node (DDS transport, or its queue overflowing on an overloaded machine: docs/NODE.md)")
            runtime.node_log.warn_throttled(text, key="loss", period=10.0)
            return DiagnosticStatus.WARN, text
        if engine.state == TargetState.LOST:
            return DiagnosticStatus.WARN, "target lost, searching"
        return DiagnosticStatus.OK, TargetState(engine.state).name

    def values(self, hardware_id: str) -> dict[str, str]:
        """The key/value pairs of the status."""
        runtime = self.runtime
        engine, stream, stats, loaded = runtime.engine, runtime.stream, runtime.stats, runtime.engine.loaded
        return {
            "state": TargetState(engine.state).name, "variant": loaded.tracker if loaded else "",
            "device": hardware_id, "weights": (loaded.weights or "packaged default") if loaded else "",
            "fps": f"{stats.fps():.2f}",
            "latency_p50_ms": f"{stats.latency(50):.1f}",
            "latency_p95_ms": f"{stats.latency(95):.1f}",
            "processing_p50_ms": f"{stats.processing(50):.1f}",
            "processing_p95_ms": f"{stats.processing(95):.1f}",
            "received_frames": str(runtime.received), "processed_frames": str(stats.processed),
            "dropped_frames": str(runtime.slot.dropped), "bad_frames": str(runtime.bad_frames),
            "oversized_frames": str(runtime.oversized_frames), "missed_frames": str(stream.missed),
            "stamp_jumps": str(stream.stamp_jumps), "zero_stamps": str(stream.zero_stamps),
            "threads": str(engine.threads.resolved),
            "threads_in_worker": str(engine.threads.in_worker or ""),
            "reloading": str(engine.reloading).lower(), "active": str(runtime.active).lower(),
            "last_error": engine.load_error or "",
        }

    def publish(self) -> None:
        """Publish one DiagnosticArray with the node's status."""
        node, engine = self.runtime.node, self.runtime.engine
        status = DiagnosticStatus()
        status.name = f"{node.get_fully_qualified_name()}: tracker"
        status.hardware_id = str(engine.tracker.device) if engine.tracker is not None else "none"
        level, status.message = self.level()
        status.level = bytes([level]) if isinstance(level, int) else level
        values = self.values(status.hardware_id)
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        array = DiagnosticArray()
        array.header.stamp = node.get_clock().now().to_msg()
        array.status = [status]
        self.publisher.publish(array)
