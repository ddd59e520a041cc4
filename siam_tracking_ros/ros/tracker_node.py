"""The ``tracker_node`` executable: a plain rclpy node around :class:`.node_core.TrackerRuntime`."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

import rclpy
from rclpy.exceptions import InvalidHandle
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node

from siam_tracking_ros.ros.given_parameters import declare_from_overrides
from siam_tracking_ros.ros.node_core import TrackerRuntime
from siam_tracking_ros.ros.shutdown import (
    disarm_interrupts,
    end_after_interrupt_at_start,
    ignore_interrupts_until_exit,
    install_interrupt_once,
)

#: executor threads: images, services (init/reset), parameter services and the diagnostics timer each
#: have their own callback group, so each can run while another is busy
EXECUTOR_THREADS = 4


class ResilientExecutor(MultiThreadedExecutor):
    """A multi-threaded executor whose ``spin()`` survives an entity destroyed by another thread.

    rclpy's executor collects the waitables of its nodes, then enters them and adds them to its
    wait set. A subscription or publisher destroyed by another thread in between (a lifecycle
    cleanup running in a callback thread, a test removing a subscription while a spinner runs)
    leaves its destroyed event handlers in that list; adding them raises ``InvalidHandle`` out of
    ``spin()``, the spinning thread ends, and no callback of any node on the executor runs again:
    services stop answering for good (ros2/rclpy#1284). Here that one iteration is dropped
    instead; the next collects the entities afresh, without the destroyed ones.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        #: iterations dropped because an entity was destroyed while they were being set up
        self.dropped_iterations = 0
        self._failures_in_a_row = 0

    def spin_once(self, timeout_sec: float | None = None) -> None:
        try:
            super().spin_once(timeout_sec)
        except InvalidHandle:
            self.dropped_iterations += 1
            self._failures_in_a_row += 1
            if self._failures_in_a_row > 3:  # not a passing race: do not spin hot
                time.sleep(0.01)
            return
        self._failures_in_a_row = 0


class TrackerNode(Node):
    """Tracks one target in the ``image`` stream; starts active, loads its model in the background."""

    def __init__(self, node_name: str = "tracker_node", **kwargs) -> None:
        super().__init__(node_name, **declare_from_overrides(kwargs))
        self.runtime = TrackerRuntime(self)
        self.runtime.create_entities()
        self.runtime.set_active(True)
        self.runtime.start_model()

    def destroy_node(self) -> None:
        self.runtime.destroy_entities()
        super().destroy_node()


def spin_node(node: Node) -> None:
    """Spin ``node`` on a multi-threaded executor until shutdown (Ctrl-C / SIGTERM).

    Cleanup ignores further SIGINTs (``ros2 launch`` forwards one after the terminal's).
    """
    executor = ResilientExecutor(num_threads=EXECUTOR_THREADS)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        disarm_interrupts()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        ignore_interrupts_until_exit()


def build_and_spin(make_node: Callable[[], Node]) -> int:
    """Build the node and spin it; Ctrl-C while it builds (loading torch, the model) ends cleanly too."""
    try:
        node = make_node()
    except KeyboardInterrupt:
        return end_after_interrupt_at_start()
    spin_node(node)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tracker_node`` (ROS arguments after ``--ros-args``)."""
    install_interrupt_once()
    rclpy.init(args=list(sys.argv if argv is None else ["tracker_node", *argv]))
    return build_and_spin(TrackerNode)


if __name__ == "__main__":
    sys.exit(main())
