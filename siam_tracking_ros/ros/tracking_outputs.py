"""The tracker node's outputs of one frame: ``~/tracked_object``, ``~/confidence``, ``~/mask`` and
``~/debug_image`` (the last only while someone subscribes to it)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from geometry_msgs.msg import Point32
from sensor_msgs.msg import Image
from std_msgs.msg import Float32

from siam_tracking_ros.msg import TrackedObject
from siam_tracking_ros.ros.image_conversion import cv2_to_imgmsg
from siam_tracking_ros.ros.node_entities import NodeEntities, PublisherKind
from siam_tracking_ros.ros.overlay import draw_tracking
from siam_tracking_ros.ros.tracking_core import StepOutcome, TargetState


def finite(value: float, default: float = 0.0) -> float:
    """``value`` as a float, ``default`` where it is not finite."""
    value = float(value)
    return value if math.isfinite(value) else default


def tracked_object(header: Any, size: tuple[int, int], outcome: StepOutcome, latency_ms: float,
                   dropped: int) -> TrackedObject:
    """The TrackedObject of one frame; every float finite, the box the last confident one if LOST."""
    msg = TrackedObject()
    msg.header = header
    msg.tracker = outcome.tracker
    msg.state = int(outcome.state)
    msg.latency_ms = finite(latency_ms)
    msg.frame_count, msg.frames_since_seen = outcome.frame_count, outcome.frames_since_seen
    msg.dropped_frames = dropped
    msg.image_width, msg.image_height = size
    result = outcome.result
    if result is None:
        return msg
    msg.score = finite(result.score)
    if outcome.box is not None:
        msg.x, msg.y, msg.width, msg.height = (finite(v) for v in outcome.box)
    polygon = result.polygon if outcome.state == TargetState.TRACKING else None
    if polygon is not None and np.all(np.isfinite(polygon)):
        msg.polygon.points = [Point32(x=float(px), y=float(py), z=0.0) for px, py in polygon]
    return msg


class TrackingOutputs:
    """The output publishers (of ``kind``: plain, or lifecycle ones) and what goes on them."""

    def __init__(self, entities: NodeEntities, kind: PublisherKind) -> None:
        self.object = entities.publisher(kind, TrackedObject, "~/tracked_object", 10)
        self.mask = entities.publisher(kind, Image, "~/mask", 2)
        self.confidence = entities.publisher(kind, Float32, "~/confidence", 10)
        self.debug = entities.publisher(kind, Image, "~/debug_image", 2)

    def debug_wanted(self) -> bool:
        """Whether anyone subscribes to the debug image (it is drawn only then)."""
        return self.debug.get_subscription_count() > 0

    def publish(self, header: Any, image: np.ndarray | None, outcome: StepOutcome, size: tuple[int, int],
                latency_ms: float, dropped: int, fps: float) -> None:
        """Publish the outputs of one frame (``image`` None: not decoded, no debug image)."""
        msg = tracked_object(header, size, outcome, latency_ms, dropped)
        result = outcome.result
        if result is not None and outcome.state == TargetState.TRACKING and result.mask is not None:
            self.mask.publish(cv2_to_imgmsg(np.ascontiguousarray(result.mask, np.uint8), "mono8", header))
            msg.has_mask = True
        if result is not None:
            self.confidence.publish(Float32(data=msg.score))
        self.object.publish(msg)
        if image is not None and self.debug_wanted():
            tracking = outcome.state == TargetState.TRACKING and result is not None
            debug = draw_tracking(image, msg.state, outcome.box, msg.score, fps,
                                  result.polygon if tracking else None, result.mask if tracking else None,
                                  outcome.tracker)
            self.debug.publish(cv2_to_imgmsg(debug, "bgr8", header))
