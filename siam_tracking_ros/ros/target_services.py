"""Starting a target: the ``~/init_target`` service and the ``~/init_box`` topic of the tracker node.

A box is set on the newest received frame (stamp 0) or on the buffered frame with exactly the
given stamp; an ``init_target`` naming another variant switches to it first (blocking until it
has loaded).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rclpy.parameter import Parameter
from sensor_msgs.msg import RegionOfInterest

from siam_tracking_ros.ros.image_conversion import ImageConversionError
from siam_tracking_ros.ros.intake import stamp_ns
from siam_tracking_ros.ros.node_entities import NodeEntities
from siam_tracking_ros.ros.node_params import SWITCH_TIMEOUT_S
from siam_tracking_ros.srv import InitTarget


class TargetServices:
    """Init requests on ``runtime`` (a :class:`~.node_core.TrackerRuntime`)."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    def create(self, entities: NodeEntities, qos: Any, callback_group: Any) -> None:
        """The ``~/init_target`` service and the ``~/init_box`` subscription."""
        entities.service(InitTarget, "~/init_target", self._on_init_target, qos_profile=qos,
                         callback_group=callback_group)
        entities.subscription(RegionOfInterest, "~/init_box", self._on_init_box, 10,
                              callback_group=callback_group)

    def frame_for(self, stamp: int) -> tuple[np.ndarray | None, int, str]:
        """``(image, arrival, reason)`` to initialise on: the newest frame (stamp 0) or the newest
        buffered one with exactly ``stamp``."""
        runtime = self.runtime
        if stamp == 0:
            newest = runtime.buffer.newest()
            if newest is None:
                topic = runtime.node.resolve_topic_name(runtime.image_topic)
                return None, -1, f"no image received yet on {topic}"
            frame = newest[1]
        else:
            frame = runtime.buffer.find(stamp)
            if frame is None:
                span = runtime.buffer.stamp_range()
                have = f"buffered: {span[0] / 1e9:.3f} .. {span[1] / 1e9:.3f} s" if span else "none buffered"
                return None, -1, f"no buffered frame with stamp {stamp / 1e9:.3f} s ({have})"
        try:
            return runtime.intake.decode(frame.image), frame.arrival, ""
        except ImageConversionError as exc:
            return None, -1, f"the frame at that stamp cannot be used: {exc}"

    def switch_tracker(self, name: str) -> str | None:
        """Switch to variant ``name`` with its packaged weights, blocking until loaded; why not, or None."""
        engine = self.runtime.engine
        result = self.runtime.node.set_parameters_atomically([Parameter("tracker", value=name),
                                                              Parameter("weights", value="")])
        if not result.successful:
            return result.reason
        if not engine.wait_idle(SWITCH_TIMEOUT_S):
            return f"loading '{name}' takes longer than {SWITCH_TIMEOUT_S:.0f} s"
        if engine.loaded is not None and engine.loaded.tracker == name:
            return None
        return engine.load_error or f"could not switch to '{name}'"

    def init_target(self, box: tuple[float, float, float, float], stamp: int = 0,
                    tracker: str = "") -> tuple[bool, str]:
        """What ``~/init_target`` does; also used by ``~/init_box``."""
        runtime = self.runtime
        engine = runtime.engine
        if not runtime.active:
            return False, "node is not active"
        if tracker and tracker != runtime.node.get_parameter("tracker").value:
            if engine.reloading:
                return False, engine.unavailable_reason() or "model is reloading"
            reason = self.switch_tracker(tracker)
            if reason:
                return False, f"cannot switch to '{tracker}': {reason}"
        reason = engine.unavailable_reason()
        if reason:
            return False, reason
        image, arrival, reason = self.frame_for(stamp)
        if image is None:
            return False, reason
        return engine.init(image, box, arrival)

    def _on_init_target(self, request: Any, response: Any) -> Any:
        box = (request.x, request.y, request.width, request.height)
        response.success, response.message = self.init_target(box, stamp_ns(request.stamp),
                                                               request.tracker.strip())
        self.runtime.node_log.at("info" if response.success else "warn",
                                 f"init_target {tuple(round(v, 1) for v in box)}: {response.message}")
        return response

    def _on_init_box(self, msg: RegionOfInterest) -> None:
        box = (float(msg.x_offset), float(msg.y_offset), float(msg.width), float(msg.height))
        ok, message = self.init_target(box)
        self.runtime.node_log.at("info" if ok else "warn", f"init_box {box}: {message}")
