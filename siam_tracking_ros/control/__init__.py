"""ROS-free controllers that turn tracking results into motion commands."""

from siam_tracking_ros.control.follow import (
    FollowCommand,
    FollowConfig,
    PinholeCamera,
    TargetObservation,
    TargetState,
    follow_command,
)

__all__ = ["FollowCommand", "FollowConfig", "PinholeCamera", "TargetObservation", "TargetState",
           "follow_command"]
