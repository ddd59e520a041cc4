"""The ``tracker_lifecycle_node`` executable: the tracker as a managed (lifecycle) node.

Transitions (the contract of ros2/demos ``lifecycle_py``):

- **configure** loads the model the parameters name (waiting for it), then creates the topics,
  services and worker; it *fails* (the node stays unconfigured, the reason is logged) when the
  model cannot load: bad weights file, unknown variant, no CUDA, ... Fix the parameters and
  configure again.
- **activate** enables the output publishers (lifecycle publishers: nothing goes out while
  inactive) and starts processing frames; it fails when no model is loaded.
- **deactivate** stops processing (services answer "not active") and disables the publishers.
- **cleanup** / **shutdown** / error processing destroy the entities and drop the model; they fail
  when a model load still running cannot be waited out.

Parameters are declared at construction, as in the plain node; ``/diagnostics`` keeps coming while
configured (``active: false`` while inactive). The tracking logic is the same
:class:`.node_core.TrackerRuntime`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import rclpy
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from siam_tracking_ros.ros.given_parameters import declare_from_overrides
from siam_tracking_ros.ros.node_core import TrackerRuntime
from siam_tracking_ros.ros.node_entities import lifecycle_publishers
from siam_tracking_ros.ros.shutdown import install_interrupt_once
from siam_tracking_ros.ros.tracker_node import build_and_spin

#: seconds cleanup / shutdown wait for a model load in progress before they give up
RELEASE_TIMEOUT_S = 60.0


class TrackerLifecycleNode(LifecycleNode):
    """Managed variant of :class:`~siam_tracking_ros.ros.tracker_node.TrackerNode`."""

    def __init__(self, node_name: str = "tracker_node", **kwargs) -> None:
        super().__init__(node_name, **declare_from_overrides(kwargs))
        self.runtime = TrackerRuntime(self, outputs=lifecycle_publishers(self))

    def _refuse(self, transition: str, reason: str) -> TransitionCallbackReturn:
        self.get_logger().error(f"{transition} failed: {reason}")
        return TransitionCallbackReturn.FAILURE

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        reason = self.runtime.load_model()
        if reason:
            return self._refuse("configure", reason)
        self.runtime.create_entities()
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        reason = self.runtime.model_unavailable()
        if reason:
            return self._refuse("activate", reason)
        result = super().on_activate(state)  # enables the lifecycle publishers
        if result == TransitionCallbackReturn.SUCCESS:
            self.runtime.set_active(True)
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.runtime.set_active(False)
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._release("cleanup", super().on_cleanup(state))

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._release("shutdown", super().on_shutdown(state))

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._release("error processing", super().on_error(state))

    def _release(self, transition: str, managed: TransitionCallbackReturn) -> TransitionCallbackReturn:
        """Destroy the entities, drop the model; ``managed`` is what the managed entities returned."""
        runtime = self.runtime
        if runtime.configured:
            runtime.destroy_entities()
        if not runtime.engine.wait_idle(RELEASE_TIMEOUT_S):
            return self._refuse(transition, f"a model load still runs after {RELEASE_TIMEOUT_S:.0f} s")
        runtime.engine.unload()
        return managed

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
