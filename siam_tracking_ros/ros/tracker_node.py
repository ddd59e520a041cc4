"""The ``tracker_node`` executable: a plain rclpy node around :class:`.node_core.TrackerRuntime`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node

from siam_tracking_ros.ros.node_core import TrackerRuntime


class TrackerNode(Node):
    """Tracks one target in the ``image`` stream; starts active, loads its model in the background."""

    def __init__(self, node_name: str = "tracker_node", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.runtime = TrackerRuntime(self)
        self.runtime.create_entities()
        self.runtime.set_active(True)
        self.runtime.start_model()

    def destroy_node(self) -> None:
        self.runtime.destroy_entities()
        super().destroy_node()


def spin_node(node: Node) -> None:
    """Spin ``node`` on a multi-threaded executor until shutdown (Ctrl-C / SIGTERM)."""
    executor = MultiThreadedExecutor(num_threads=3)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tracker_node`` (ROS arguments after ``--ros-args``)."""
    rclpy.init(args=list(sys.argv if argv is None else ["tracker_node", *argv]))
    spin_node(TrackerNode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
