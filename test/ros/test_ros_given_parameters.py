"""ros/given_parameters.py: values given at start, declared with public rclpy API only (issue 11)."""

from __future__ import annotations

import ast

import pytest
from rclpy.parameter import Parameter
from siam_ros_testing import ROOT

pytestmark = pytest.mark.ros

ROS_PACKAGE = ROOT / "siam_tracking_ros" / "ros"


def test_tracker_node_declares_given_values_with_its_own_types(ros_session) -> None:
    from siam_tracking_ros.ros.tracker_node import TrackerNode

    node = TrackerNode("tracker_given", parameter_overrides=[
        Parameter("tracker", value="siamfc"), Parameter("weights", value="random"),
        Parameter("device", value="cpu"),
        Parameter("score_threshold", value=1),  # an integer for a double
        Parameter("lost_frames", value="five"),  # another type: the default
        Parameter("diagnostics_period", value=100.0),  # outside its range: the default
        Parameter("image_transport", value="foo"),  # refused by the node's check: the default
        Parameter("tracker_params.scale_num", value=5),  # a hyper-parameter of siamfc
        Parameter("tracker_params.no_such_field", value=1),  # not one: never declared
        Parameter("use_sim_time", value=False)])  # rclpy's own: left to rclpy
    try:
        threshold = node.get_parameter("score_threshold")
        assert threshold.type_ == Parameter.Type.DOUBLE and threshold.value == 1.0
        assert node.get_parameter("lost_frames").value == 5
        assert node.get_parameter("diagnostics_period").value == 1.0
        assert node.get_parameter("image_transport").value == "raw"
        assert node.get_parameter("tracker_params.scale_num").value == 5
        assert not node.has_parameter("tracker_params.no_such_field")
        assert node.has_parameter("use_sim_time")
        assert node.runtime.given.names("tracker_params.") == ["tracker_params.no_such_field",
                                                               "tracker_params.scale_num"]
        assert node.runtime.engine.wait_idle(60.0) and node.runtime.engine.tracker.config.scale_num == 5
    finally:
        node.destroy_node()


def test_follow_target_takes_an_integer_for_a_double(ros_session) -> None:
    from siam_tracking_ros.ros.follow_target import FollowTargetNode

    node = FollowTargetNode(namespace="/follow_given", parameter_overrides=[Parameter("yaw_gain", value=1)])
    try:
        gain = node.get_parameter("yaw_gain")
        assert gain.type_ == Parameter.Type.DOUBLE and gain.value == 1.0 and node.config.yaw_gain == 1.0
    finally:
        node.destroy_node()


def _rclpy_private_names() -> set[str]:
    """Private (single underscore) attribute names of rclpy's Node and LifecycleNode instances."""
    from rclpy.lifecycle import LifecycleNode

    node = LifecycleNode("private_names_probe")
    try:
        names = set(vars(node)) | set(dir(LifecycleNode))
    finally:
        node.destroy_node()
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


class _PrivateUse(ast.NodeVisitor):
    """Uses of ``names`` on a node: ``x._name`` (``x`` not ``self``/``cls``), ``self._name`` in a
    class derived from an rclpy node, and ``getattr(x, "_name")``."""

    NODE_BASES = frozenset({"Node", "LifecycleNode"})

    def __init__(self, names: set[str]) -> None:
        self.names, self.found, self._in_node = names, [], [False]

    def visit_ClassDef(self, item: ast.ClassDef) -> None:
        bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in item.bases}
        self._in_node.append(bool(bases & self.NODE_BASES))
        self.generic_visit(item)
        self._in_node.pop()

    def visit_Attribute(self, item: ast.Attribute) -> None:
        own = isinstance(item.value, ast.Name) and item.value.id in ("self", "cls")
        if item.attr in self.names and (not own or self._in_node[-1]):
            self.found.append(f"{item.lineno} {item.attr}")
        self.generic_visit(item)

    def visit_Call(self, item: ast.Call) -> None:
        if isinstance(item.func, ast.Name) and item.func.id in ("getattr", "setattr", "hasattr"):
            for arg in item.args[1:2]:
                if isinstance(arg, ast.Constant) and arg.value in self.names:
                    self.found.append(f"{item.lineno} {arg.value}")
        self.generic_visit(item)


def test_ros_modules_use_no_rclpy_private_attributes(ros_session) -> None:
    """No ``node._parameter_overrides`` and the like: only rclpy's public API (issue 11)."""
    private = _rclpy_private_names()
    assert "_parameter_overrides" in private
    found = []
    for path in sorted(ROS_PACKAGE.glob("*.py")):
        visitor = _PrivateUse(private)
        visitor.visit(ast.parse(path.read_text()))
        found += [f"{path.name}:{where}" for where in visitor.found]
    assert not found


def test_entities_are_not_destroyed_by_type_name() -> None:
    """No ``type(entity).__name__`` matching to pick a destroy function (issue 11)."""
    found = []
    for path in sorted(ROS_PACKAGE.glob("*.py")):
        for item in ast.walk(ast.parse(path.read_text())):
            if isinstance(item, ast.Compare) and any(
                    isinstance(sub, ast.Attribute) and sub.attr == "__name__" for sub in ast.walk(item)):
                found.append(f"{path.name}:{item.lineno}")
    assert not found
