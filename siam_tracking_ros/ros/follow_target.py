"""The ``follow_target`` executable: velocity commands that follow the tracked object.

Subscribes ``tracked_object`` (``siam_tracking_ros/TrackedObject``; remap it to the tracker's
``~/tracked_object``) and optionally ``camera_info``, publishes ``cmd_vel``
(``geometry_msgs/Twist``, or ``TwistStamped`` with ``stamped: true``) on every tracked object and
at ``rate`` Hz, and ``~/status`` (``std_msgs/String``: ``following`` or why it stopped, on change).
The control law is :func:`siam_tracking_ros.control.follow.follow_command`; this module only
moves data between it and ROS.

    follow_target --ros-args --params-file config/follow.yaml \\
        -r tracked_object:=/tracker_node/tracked_object -r cmd_vel:=/cmd_vel
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import rclpy
from geometry_msgs.msg import Twist, TwistStamped
from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor, SetParametersResult
from rclpy.duration import Duration
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import String

from siam_tracking_ros.control.follow import (
    FollowCommand,
    FollowConfig,
    PinholeCamera,
    TargetObservation,
    TargetState,
    follow_command,
)
from siam_tracking_ros.msg import TrackedObject
from siam_tracking_ros.ros.given_parameters import GivenParameters, declare_from_overrides
from siam_tracking_ros.ros.shutdown import (
    disarm_interrupts,
    end_after_interrupt_at_start,
    ignore_interrupts_until_exit,
    install_interrupt_once,
)


@dataclass(frozen=True)
class NodeOption:
    """A parameter of the node itself (not of the control law)."""

    name: str
    default: Any
    description: str
    low: float | None = None
    high: float | None = None
    read_only: bool = True


NODE_OPTIONS = (
    NodeOption("rate", 20.0, "Commands per second between tracked objects (the command is also "
               "published on every tracked object), Hz.", 1.0, 200.0),
    NodeOption("stamped", False, "Publish geometry_msgs/TwistStamped (stamp = now) instead of Twist."),
    NodeOption("frame_id", "base_link", "header.frame_id of TwistStamped commands."),
    NodeOption("use_camera_info", True, "Subscribe camera_info and use its intrinsics for the bearing "
               "(horizontal_fov is used until one arrives)."),
    NodeOption("publish_when_stopped", True, "Keep publishing zero commands at 'rate' while stopped; "
               "false: publish one zero command when stopping, then stay silent (lets a twist_mux "
               "or teleop take over).", read_only=False),
)


def _descriptor(name: str, description: str, low: float | None, high: float | None,
                default: Any, read_only: bool = False, choices: Sequence[str] = ()) -> ParameterDescriptor:
    text = description + (f" One of: {', '.join(choices)}." if choices else "")
    descriptor = ParameterDescriptor(name=name, description=text, read_only=read_only)
    if low is not None and high is not None and isinstance(default, float):
        descriptor.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high))]
    return descriptor


def observation_from_msg(msg: TrackedObject) -> TargetObservation:
    """The controller's view of one ``TrackedObject``."""
    try:
        state = TargetState(msg.state)
    except ValueError:
        state = TargetState.IDLE
    return TargetObservation(state=state, score=float(msg.score),
                             box=(float(msg.x), float(msg.y), float(msg.width), float(msg.height)),
                             image_size=(int(msg.image_width), int(msg.image_height)))


class FollowTargetNode(Node):
    """Turns ``tracked_object`` into ``cmd_vel``; zero unless the target is fresh and TRACKING."""

    def __init__(self, node_name: str = "follow_target", **kwargs) -> None:
        super().__init__(node_name, **declare_from_overrides(kwargs))
        self.given = GivenParameters(self)
        self.config = self._declare_config()
        for option in NODE_OPTIONS:
            self._declare(option.name, option.default,
                          _descriptor(option.name, option.description, option.low, option.high,
                                      option.default, option.read_only))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.stamped = bool(self._value("stamped"))
        self.frame_id = str(self._value("frame_id"))
        self.publish_when_stopped = bool(self._value("publish_when_stopped"))
        self.observation: TargetObservation | None = None
        self.latency_s = 0.0
        self.received_at = 0.0
        self.camera_info: CameraInfo | None = None
        self.last_command: FollowCommand | None = None
        self.published = 0
        self.cmd_pub = self.create_publisher(TwistStamped if self.stamped else Twist, "cmd_vel", 10)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.status_pub = self.create_publisher(String, "~/status", latched)
        self.create_subscription(TrackedObject, "tracked_object", self._on_tracked_object, 10)
        if self._value("use_camera_info"):
            self.create_subscription(CameraInfo, "camera_info", self._on_camera_info,
                                     qos_profile_sensor_data)
        self.create_timer(1.0 / float(self._value("rate")), self._on_timer)
        self.get_logger().info(f"following in '{self.config.mode}' mode: "
                               f"{self.resolve_topic_name('tracked_object')} -> "
                               f"{self.resolve_topic_name('cmd_vel')}")

    # --- parameters -----------------------------------------------------------------------------
    def _value(self, name: str) -> Any:
        return self.get_parameter(name).value

    def _declare(self, name: str, default: Any, descriptor: ParameterDescriptor) -> Any:
        """Declare one parameter; an integer given for a float parameter is taken as a float."""
        try:
            return self.given.declare(name, default, descriptor).value
        except ParameterException as exc:  # wrong type, outside the range
            raise ValueError(f"parameter {name}: {exc}") from exc

    def _declare_config(self) -> FollowConfig:
        values = {}
        for item in dataclasses.fields(FollowConfig):
            meta = item.metadata
            values[item.name] = self._declare(
                item.name, item.default,
                _descriptor(item.name, meta["help"], meta["min"], meta["max"], item.default,
                            choices=meta["choices"]))
        config = FollowConfig(**values)
        problems = config.problems()
        if problems:
            raise ValueError("; ".join(problems))
        return config

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        names = {item.name for item in dataclasses.fields(FollowConfig)}
        changes = {p.name: p.value for p in parameters if p.name in names}
        candidate = dataclasses.replace(self.config, **changes) if changes else self.config
        problems = candidate.problems()
        if problems:
            return SetParametersResult(successful=False, reason="; ".join(problems))
        self.config = candidate
        for parameter in parameters:
            if parameter.name == "publish_when_stopped":
                self.publish_when_stopped = bool(parameter.value)
        return SetParametersResult(successful=True)

    # --- inputs ---------------------------------------------------------------------------------
    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.camera_info = msg

    def _on_tracked_object(self, msg: TrackedObject) -> None:
        self.observation = observation_from_msg(msg)
        self.latency_s = max(0.0, float(msg.latency_ms) / 1e3)
        self.received_at = time.monotonic()
        self._publish(self.current_command())

    def _on_timer(self) -> None:
        self._publish(self.current_command())

    # --- output ---------------------------------------------------------------------------------
    def camera(self) -> PinholeCamera | None:
        """Intrinsics from the newest ``camera_info``, scaled to the tracked image; None without."""
        info, observation = self.camera_info, self.observation
        if info is None or observation is None:
            return None
        return PinholeCamera.from_intrinsics(list(info.k), (int(info.width), int(info.height)),
                                             observation.image_size)

    def current_command(self) -> FollowCommand:
        """The command for the newest observation at its current age."""
        age = self.latency_s + (time.monotonic() - self.received_at)
        return follow_command(self.config, self.observation, age, self.camera())

    def _publish(self, command: FollowCommand) -> None:
        previous, self.last_command = self.last_command, command
        if previous is None or previous.reason != command.reason:
            self.status_pub.publish(String(data=command.reason))
            if command.reason != "following":
                self.get_logger().info(f"stopped: {command.reason}")
            else:
                self.get_logger().info("following the target")
        stopping = previous is None or not previous.is_stop
        if command.is_stop and not (self.publish_when_stopped or stopping):
            return
        twist = Twist()
        twist.linear.x = command.forward
        twist.angular.y = command.tilt_rate
        twist.angular.z = command.yaw_rate
        if self.stamped:
            message = TwistStamped()
            message.header.stamp = self.get_clock().now().to_msg()
            message.header.frame_id = self.frame_id
            message.twist = twist
            self.cmd_pub.publish(message)
        else:
            self.cmd_pub.publish(twist)
        self.published += 1

    def stop(self, timeout: float = 0.5) -> None:
        """Publish one zero command and wait (up to ``timeout`` s) until subscribers have it."""
        self.publish_when_stopped = True
        self._publish(FollowCommand.stop("shutting down"))
        self.cmd_pub.wait_for_all_acked(Duration(seconds=timeout))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``follow_target`` (ROS arguments after ``--ros-args``)."""
    # Our handler, not rclpy's: the context stays up after Ctrl-C / SIGTERM, so a last zero
    # command can still be sent.
    install_interrupt_once((signal.SIGINT, signal.SIGTERM))
    rclpy.init(args=list(sys.argv if argv is None else ["follow_target", *argv]),
               signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = FollowTargetNode()
    except ValueError as exc:  # a parameter outside its range or of the wrong type
        print(f"follow_target: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    except KeyboardInterrupt:  # Ctrl-C while starting
        return end_after_interrupt_at_start()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        disarm_interrupts()
        if rclpy.ok():
            node.stop()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        ignore_interrupts_until_exit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
