"""Parameter values given to a node at start, read and declared through rclpy's public API.

Values come from params files, ``-p name:=value`` and ``parameter_overrides``. A node built with
``automatically_declare_parameters_from_overrides=True`` has rclpy declare each of them (dynamically
typed) before the node's own code runs; :class:`GivenParameters` reads them off with
``get_parameters_by_prefix``, undeclares them, and declares each one later with the node's type,
descriptor and checks. That allows what plain ``declare_parameter`` does not: an integer given for
a double parameter is taken as a double (``-p score_threshold:=1``), a value can be checked before
it is declared, and the names given for parameters that the node does not have are known.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.node import Node
from rclpy.parameter import Parameter

#: parameters rclpy declares on every node (they stay as rclpy left them)
RCLPY_PARAMETERS = frozenset({"use_sim_time", "start_type_description_service"})

#: ``check(name, value)``: why ``value`` is not acceptable, or None
Check = Callable[[str, Any], "str | None"]


class RefusedValueError(ValueError):
    """A given value that the node's own check refused (the message is the reason)."""


def declare_from_overrides(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` for ``Node.__init__`` with the given parameters declared (see the module docstring)."""
    return {**kwargs, "automatically_declare_parameters_from_overrides": True}


def parameter_type(default: Any) -> Parameter.Type:
    """The ROS type of a declaration's default (a value, or a ``Parameter.Type`` for an unset one)."""
    return default if isinstance(default, Parameter.Type) else Parameter.Type.from_parameter_value(default)


class GivenParameters:
    """The values given to ``node`` at start; takes them off the node (undeclares them)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        given = {name: parameter for name, parameter in node.get_parameters_by_prefix("").items()
                 if name not in RCLPY_PARAMETERS}
        for name in given:
            node.undeclare_parameter(name)
        self.values: dict[str, Parameter] = given

    def names(self, prefix: str = "") -> list[str]:
        """Names given that start with ``prefix``, sorted."""
        return sorted(name for name in self.values if name.startswith(prefix))

    def value(self, name: str, default: Any) -> Any:
        """The value given for ``name`` in the type of ``default`` (an int given for a double as a
        float); ``None`` if none was given."""
        given = self.values.get(name)
        if given is None:
            return None
        value = given.value
        if (parameter_type(default) == Parameter.Type.DOUBLE and isinstance(value, int)
                and not isinstance(value, bool)):
            value = float(value)
        return value

    def declare(self, name: str, default: Any, descriptor: ParameterDescriptor,
                check: Check | None = None) -> Parameter:
        """Declare ``name`` with its given value, else ``default``.

        Raises ``InvalidParameterTypeException`` for a given value of another type,
        ``InvalidParameterValueException`` for one outside the descriptor's range and
        :class:`RefusedValueError` for one refused by ``check``; then nothing is declared (the caller
        may declare the default with :meth:`declare_default`).
        """
        value = self.value(name, default)
        if value is None:  # none given (or the node was built without declaring them)
            return self.node.declare_parameter(name, default, descriptor)
        expected = parameter_type(default)
        if Parameter.Type.from_parameter_value(value) != expected:
            raise InvalidParameterTypeException(Parameter(name, value=value), expected.name)
        reason = check(name, value) if check is not None else None
        if reason:
            raise RefusedValueError(reason)
        return self.node.declare_parameter(name, value, descriptor, ignore_override=True)

    def declare_default(self, name: str, default: Any, descriptor: ParameterDescriptor) -> Parameter:
        """Declare ``name`` with ``default``, whatever was given."""
        return self.node.declare_parameter(name, default, descriptor, ignore_override=True)
