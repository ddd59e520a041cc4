"""Follow-target control law: a tracked box in, velocity commands out (ROS-free).

Conventions (REP-103, the robot's or the camera mount's base frame: x forward, y left, z up):

* ``forward`` is the linear x speed in m/s (positive = towards the target);
* ``yaw_rate`` is the angular z rate in rad/s, positive = turn left (counter-clockwise seen from
  above); in ``pan_tilt`` mode it is the pan rate with the same sign;
* ``tilt_rate`` is the angular y rate in rad/s (``pan_tilt`` only), positive = tilt down.

The horizontal offset of the box centre is turned into a bearing angle with a pinhole camera
(from ``camera_info`` when there is one, else from a horizontal field of view), so gains are in
rad/s per radian of bearing whatever the resolution. The distance proxy is the box height as a
fraction of the image height, compared with ``desired_height``: a small (far) target gives full
speed, a target that grows towards the desired height slows the robot to a stop.

Every command is zero unless the observation is fresh, ``TRACKING`` and at least ``min_score``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from siam_tracking_ros.core.presence import TargetState

MODES = ("drive", "pan_tilt")


def _spec(default: Any, help: str, low: float | None = None, high: float | None = None,
          choices: tuple[str, ...] = ()) -> Any:
    metadata = {"help": help, "min": low, "max": high, "choices": choices}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class FollowConfig:
    """Gains, dead-bands, limits and safety thresholds of :func:`follow_command`.

    Each field's metadata holds a description and its allowed range (``min``/``max``, inclusive)
    or ``choices``; :meth:`problems` checks them and the node declares its parameters from them.
    """

    mode: str = _spec("drive", "drive: forward speed + yaw rate (mobile base); pan_tilt: pan and "
                      "tilt rates (camera head), no forward motion.", choices=MODES)
    yaw_gain: float = _spec(1.5, "Yaw (drive) or pan (pan_tilt) rate per radian of horizontal "
                            "bearing to the box centre, (rad/s)/rad.", 0.0, 20.0)
    tilt_gain: float = _spec(1.0, "Tilt rate per radian of vertical bearing (pan_tilt), (rad/s)/rad.",
                             0.0, 20.0)
    forward_gain: float = _spec(0.8, "Forward speed per unit of relative height error "
                                "(desired_height - height) / desired_height, m/s.", 0.0, 10.0)
    dead_band: float = _spec(0.03, "Bearing (rad) within which the robot does not turn / tilt; "
                             "outside it the command grows from zero (no jump).", 0.0, 0.5)
    height_dead_band: float = _spec(0.05, "Relative height error within which the forward speed "
                                    "is zero.", 0.0, 0.5)
    max_yaw_rate: float = _spec(1.0, "Limit of |yaw rate| (or |pan rate|), rad/s.", 0.0, 10.0)
    max_tilt_rate: float = _spec(1.0, "Limit of |tilt rate|, rad/s.", 0.0, 10.0)
    max_forward_speed: float = _spec(0.5, "Limit of the forward speed, m/s.", 0.0, 5.0)
    max_reverse_speed: float = _spec(0.0, "Limit of the backward speed when the target is larger "
                                     "than desired, m/s (0: never back up).", 0.0, 5.0)
    desired_height: float = _spec(0.5, "Box height, as a fraction of the image height, at which "
                                  "the robot stands still.", 0.01, 1.0)
    min_score: float = _spec(0.5, "Stop when the tracker's score (a presence probability) is below "
                             "this, even while TRACKING.", 0.0, 1.0)
    timeout: float = _spec(0.5, "Stop when the newest observation is older than this, s (image "
                           "stamp to now: the tracker's latency plus the time since it arrived).",
                           0.01, 60.0)
    horizontal_fov: float = _spec(1.047, "Horizontal field of view of the camera, rad, used "
                                  "while no camera_info is known (square pixels assumed).", 0.01, 3.1)

    def problems(self) -> list[str]:
        """Why this configuration is invalid (empty when it is valid)."""
        found = []
        for item in dataclasses.fields(self):
            value, meta = getattr(self, item.name), item.metadata
            if meta["choices"] and value not in meta["choices"]:
                found.append(f"{item.name} must be one of {', '.join(meta['choices'])}, got '{value}'")
            elif meta["min"] is not None and not meta["min"] <= value <= meta["max"]:
                found.append(f"{item.name} must be in [{meta['min']}, {meta['max']}], got {value}")
        return found


@dataclass(frozen=True)
class PinholeCamera:
    """Focal lengths and principal point in pixels of the image the boxes refer to."""

    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_fov(cls, width: float, height: float, horizontal_fov: float) -> PinholeCamera:
        """Centred camera with square pixels and the given horizontal field of view (rad)."""
        focal = (width / 2.0) / math.tan(horizontal_fov / 2.0)
        return cls(focal, focal, width / 2.0, height / 2.0)

    @classmethod
    def from_intrinsics(cls, k: tuple[float, ...] | list[float], calibrated_size: tuple[int, int],
                        image_size: tuple[int, int]) -> PinholeCamera | None:
        """From a row-major 3x3 ``K`` (``CameraInfo.k``) of a camera calibrated at
        ``calibrated_size``, rescaled to ``image_size``; None for an uncalibrated (zero) ``K``."""
        fx, fy, cx, cy = float(k[0]), float(k[4]), float(k[2]), float(k[5])
        if fx <= 0.0 or fy <= 0.0:
            return None
        scale_x = image_size[0] / calibrated_size[0] if calibrated_size[0] > 0 else 1.0
        scale_y = image_size[1] / calibrated_size[1] if calibrated_size[1] > 0 else 1.0
        return cls(fx * scale_x, fy * scale_y, cx * scale_x, cy * scale_y)

    def bearing(self, u: float, v: float) -> tuple[float, float]:
        """``(left, down)`` angles in rad of the ray through pixel ``(u, v)``."""
        return math.atan2(self.cx - u, self.fx), math.atan2(v - self.cy, self.fy)


@dataclass(frozen=True)
class TargetObservation:
    """What the controller needs from one ``TrackedObject``."""

    state: TargetState
    score: float
    box: tuple[float, float, float, float]  # x, y, width, height in pixels, top-left origin
    image_size: tuple[int, int]  # width, height of the source image


@dataclass(frozen=True)
class FollowCommand:
    """One velocity command; ``reason`` says why it is what it is (``following`` or why stopped)."""

    forward: float = 0.0
    yaw_rate: float = 0.0
    tilt_rate: float = 0.0
    reason: str = "stopped"

    @property
    def is_stop(self) -> bool:
        return self.forward == 0.0 and self.yaw_rate == 0.0 and self.tilt_rate == 0.0

    @classmethod
    def stop(cls, reason: str) -> FollowCommand:
        return cls(reason=reason)


def apply_dead_band(value: float, width: float) -> float:
    """Zero within ``±width``, else ``value`` moved towards zero by ``width`` (continuous)."""
    if abs(value) <= width:
        return 0.0
    return value - math.copysign(width, value)


def clamp(value: float, low: float, high: float) -> float:
    """``value`` limited to ``[low, high]``; a zero result is +0.0 (never -0.0)."""
    return min(max(value, low), high) + 0.0


def stop_reason(config: FollowConfig, observation: TargetObservation | None, age: float) -> str | None:
    """Why the robot must not move for this observation ``age`` seconds old; None to follow."""
    if observation is None:
        return "no tracked object received yet"
    if not age <= config.timeout:  # also catches NaN
        return f"stale: newest tracked object is {age:.2f} s old (timeout {config.timeout:g} s)"
    if observation.state == TargetState.IDLE:
        return "IDLE: the tracker has no target"
    if observation.state == TargetState.LOST:
        return "LOST: the tracker lost the target"
    if observation.state != TargetState.TRACKING:
        return f"unknown tracker state {int(observation.state)}"
    if not observation.score >= config.min_score:
        return f"low score {observation.score:.2f} < min_score {config.min_score:g}"
    width, height = observation.box[2:]
    image_width, image_height = observation.image_size
    if not (all(math.isfinite(v) for v in observation.box) and width > 0 and height > 0
            and image_width > 0 and image_height > 0):
        return "invalid box or image size"
    return None


def follow_command(config: FollowConfig, observation: TargetObservation | None, age: float,
                   camera: PinholeCamera | None = None) -> FollowCommand:
    """The command for ``observation``, taken ``age`` seconds ago (zero unless safe to follow).

    ``camera`` gives the bearing of the box centre; without it a centred pinhole camera with
    ``config.horizontal_fov`` is assumed.
    """
    reason = stop_reason(config, observation, age)
    if reason is not None:
        return FollowCommand.stop(reason)
    assert observation is not None
    x, y, width, height = observation.box
    image_width, image_height = observation.image_size
    if camera is None:
        camera = PinholeCamera.from_fov(image_width, image_height, config.horizontal_fov)
    left, down = camera.bearing(x + width / 2.0, y + height / 2.0)
    turn = clamp(config.yaw_gain * apply_dead_band(left, config.dead_band),
                 -config.max_yaw_rate, config.max_yaw_rate)
    if config.mode == "pan_tilt":
        tilt = clamp(config.tilt_gain * apply_dead_band(down, config.dead_band),
                     -config.max_tilt_rate, config.max_tilt_rate)
        return FollowCommand(yaw_rate=turn, tilt_rate=tilt, reason="following")
    height_error = (config.desired_height - height / image_height) / config.desired_height
    forward = clamp(config.forward_gain * apply_dead_band(height_error, config.height_dead_band),
                    -config.max_reverse_speed, config.max_forward_speed)
    return FollowCommand(forward=forward, yaw_rate=turn, reason="following")
