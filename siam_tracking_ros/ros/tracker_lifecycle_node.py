"""The ``tracker_lifecycle_node`` executable: the tracker as a managed (lifecycle) node.

Transitions: configure creates topics/services and loads the model in the background;
activate starts processing frames; deactivate stops it (services answer "not active");
cleanup drops the model and the entities. Parameters are declared at construction, as in the
plain node. The tracking logic is the same :class:`.node_core.TrackerRuntime`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import rclpy
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from siam_tracking_ros.ros.node_core import TrackerRuntime
from siam_tracking_ros.ros.shutdown import install_interrupt_once
from siam_tracking_ros.ros.tracker_node import build_and_spin


class TrackerLifecycleNode(LifecycleNode):
    """Managed variant of :class:`~siam_tracking_ros.ros.tracker_node.TrackerNode`."""

    def __init__(self, node_name: str = "tracker_node", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.runtime = TrackerRuntime(self)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.runtime.create_entities()
        self.runtime.start_model()
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.runtime.set_active(True)
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.runtime.set_active(False)
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        if self.runtime.configured:
            self.runtime.destroy_entities()
        self.runtime.engine.wait_idle(60.0)
        self.runtime.engine.unload()

    def destroy_node(self) -> None:
        if self.runtime.configured:
            self.runtime.destroy_entities()
        super().destroy_node()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tracker_lifecycle_node`` (starts unconfigured; drive it with lifecycle services)."""
    install_interrupt_once()
    rclpy.init(args=list(sys.argv if argv is None else ["tracker_lifecycle_node", *argv]))
    return build_and_spin(TrackerLifecycleNode)


if __name__ == "__main__":
    sys.exit(main())
