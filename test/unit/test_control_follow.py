"""The follow-target control law (ROS-free): signs, dead-bands, limits and every stop condition."""

from __future__ import annotations

import dataclasses
import math
from itertools import pairwise

import pytest

from siam_tracking_ros.control.follow import (
    FollowConfig,
    PinholeCamera,
    TargetObservation,
    TargetState,
    apply_dead_band,
    follow_command,
)

IMAGE = (320, 240)


def seen(box: tuple[float, float, float, float], score: float = 0.9,
         state: TargetState = TargetState.TRACKING) -> TargetObservation:
    return TargetObservation(state=state, score=score, box=box, image_size=IMAGE)


def centred(width: float, height: float, dx: float = 0.0, dy: float = 0.0) -> tuple[float, ...]:
    """A box of this size whose centre is ``(dx, dy)`` pixels off the image centre."""
    return (IMAGE[0] / 2 + dx - width / 2, IMAGE[1] / 2 + dy - height / 2, width, height)


def test_default_config_is_valid_and_each_range_is_checked() -> None:
    assert FollowConfig().problems() == []
    for item in dataclasses.fields(FollowConfig):
        if item.metadata["choices"]:
            bad = dataclasses.replace(FollowConfig(), **{item.name: "nonsense"})
        else:
            bad = dataclasses.replace(FollowConfig(), **{item.name: item.metadata["max"] + 1.0})
        assert any(item.name in text for text in bad.problems()), item.name


def test_turns_towards_the_side_of_the_target() -> None:
    config = FollowConfig()
    right = follow_command(config, seen(centred(40, 80, dx=+80)), age=0.0)
    left = follow_command(config, seen(centred(40, 80, dx=-80)), age=0.0)
    assert right.reason == left.reason == "following"
    assert right.yaw_rate < 0.0 < left.yaw_rate  # REP-103: positive angular z turns left
    assert right.yaw_rate == pytest.approx(-left.yaw_rate)


def test_bearing_matches_the_field_of_view() -> None:
    config = FollowConfig(yaw_gain=1.0, dead_band=0.0, max_yaw_rate=10.0)
    # a box centred on the right border of the image is half the field of view away
    edge = follow_command(config, seen((IMAGE[0] - 20, 100, 40, 40)), age=0.0)
    assert edge.yaw_rate == pytest.approx(-config.horizontal_fov / 2, rel=1e-6)


def test_dead_band_is_continuous() -> None:
    assert apply_dead_band(0.02, 0.03) == 0.0
    assert apply_dead_band(0.05, 0.03) == pytest.approx(0.02)
    assert apply_dead_band(-0.05, 0.03) == pytest.approx(-0.02)
    config = FollowConfig()
    almost_centred = follow_command(config, seen(centred(40, 80, dx=3)), age=0.0)
    assert almost_centred.yaw_rate == 0.0


def test_slows_as_the_target_grows_and_stops_at_the_desired_height() -> None:
    config = FollowConfig(max_reverse_speed=0.2)
    speeds = [follow_command(config, seen(centred(h / 2, h)), age=0.0).forward
              for h in (20, 40, 60, 80, 100, 120, 140)]
    assert all(a >= b for a, b in pairwise(speeds)), speeds
    assert speeds[0] > speeds[-2]
    at_goal = follow_command(config, seen(centred(60, config.desired_height * IMAGE[1])), age=0.0)
    assert at_goal.forward == 0.0
    too_close = follow_command(config, seen(centred(150, 220)), age=0.0)
    assert -0.2 <= too_close.forward < 0.0


def test_limits_are_respected() -> None:
    config = FollowConfig(yaw_gain=20.0, forward_gain=10.0, max_yaw_rate=0.4, max_forward_speed=0.3,
                          max_reverse_speed=0.1)
    far_right = follow_command(config, seen((300, 110, 10, 10)), age=0.0)
    assert far_right.yaw_rate == -0.4 and far_right.forward == 0.3
    huge = follow_command(config, seen((0, 0, 320, 240)), age=0.0)
    assert huge.forward == -0.1
    never_back = follow_command(dataclasses.replace(config, max_reverse_speed=0.0),
                                seen((0, 0, 320, 240)), age=0.0)
    assert never_back.forward == 0.0


@pytest.mark.parametrize(("observation", "age", "reason"), [
    (None, 0.0, "no tracked object"),
    (seen(centred(40, 40, dx=80), state=TargetState.IDLE), 0.0, "IDLE"),
    (seen(centred(40, 40, dx=80), state=TargetState.LOST), 0.0, "LOST"),
    (seen(centred(40, 40, dx=80), score=0.2), 0.0, "low score"),
    (seen(centred(40, 40, dx=80)), 0.6, "stale"),
    (seen(centred(40, 40, dx=80)), math.nan, "stale"),
    (seen((10.0, 10.0, 0.0, 40.0)), 0.0, "invalid"),
    (seen((math.nan, 10.0, 40.0, 40.0)), 0.0, "invalid"),
    (TargetObservation(TargetState.TRACKING, 0.9, (10, 10, 40, 40), (0, 0)), 0.0, "invalid"),
])
def test_stops(observation, age: float, reason: str) -> None:
    command = follow_command(FollowConfig(), observation, age)
    assert command.is_stop and reason in command.reason


def test_pan_tilt_mode_tilts_down_for_a_low_target_and_never_drives() -> None:
    config = FollowConfig(mode="pan_tilt")
    low_right = follow_command(config, seen(centred(20, 20, dx=60, dy=60)), age=0.0)
    assert low_right.forward == 0.0
    assert low_right.tilt_rate > 0.0 and low_right.yaw_rate < 0.0
    high = follow_command(config, seen(centred(20, 20, dy=-60)), age=0.0)
    assert high.tilt_rate < 0.0


def test_camera_intrinsics_move_the_principal_point_and_rescale() -> None:
    k = [400.0, 0.0, 100.0, 0.0, 400.0, 120.0, 0.0, 0.0, 1.0]
    camera = PinholeCamera.from_intrinsics(k, (320, 240), IMAGE)
    assert camera is not None
    command = follow_command(FollowConfig(), seen(centred(40, 80)), age=0.0, camera=camera)
    assert command.yaw_rate < 0.0  # the image centre is right of this camera's principal point
    half = PinholeCamera.from_intrinsics(k, (640, 480), IMAGE)  # calibrated at twice the size
    assert half == PinholeCamera(200.0, 200.0, 50.0, 60.0)
    assert PinholeCamera.from_intrinsics([0.0] * 9, (320, 240), IMAGE) is None
