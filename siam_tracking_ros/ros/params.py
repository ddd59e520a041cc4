"""Parameters of the tracker node: declarations with descriptions and ranges, and validation.

Node-level parameters are listed in :data:`NODE_PARAMS`. A variant's hyper-parameters become
``tracker_params.<field>``, derived from its config dataclass with :func:`dataclasses.fields`, so a
new variant needs no edit here. A config field may carry ``metadata={"help": ..., "min": ...,
"max": ...}``; those become the descriptor's description and range.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

PREFIX = "tracker_params."
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class ParamDef:
    """One node-level parameter."""

    name: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    read_only: bool = False
    #: changing it rebuilds the model (in the background)
    reloads: bool = False

    def descriptor(self) -> ParameterDescriptor:
        text = self.description + (f" One of: {', '.join(self.choices)}." if self.choices else "")
        descriptor = ParameterDescriptor(name=self.name, description=text, read_only=self.read_only)
        if self.low is not None and self.high is not None:
            if isinstance(self.default, bool):
                pass
            elif isinstance(self.default, int):
                descriptor.integer_range = [IntegerRange(from_value=int(self.low), to_value=int(self.high),
                                                         step=1)]
            elif isinstance(self.default, float):
                descriptor.floating_point_range = [FloatingPointRange(from_value=float(self.low),
                                                                      to_value=float(self.high))]
        return descriptor


NODE_PARAMS: tuple[ParamDef, ...] = (
    ParamDef("tracker", "nanotrack", "Tracker variant (registry name). Changing it reloads the model.",
             reloads=True),
    ParamDef("weights", "", "Weights file (.safetensors or official checkpoint); empty = the packaged "
             "trained default of the variant; 'random' = untrained (tests only). Changing it reloads "
             "the model.", reloads=True),
    ParamDef("device", "auto", "Device: auto, cpu, cuda or cuda:N. Changing it reloads the model.",
             reloads=True),
    ParamDef("half", False, "Run the network in fp16 (CUDA only; ignored on CPU).", reloads=True),
    ParamDef("cuda_graphs", False, "Replay the per-frame search pass from captured CUDA graphs (CUDA "
             "only; variants with static-shape search passes; ignored elsewhere).", reloads=True),
    ParamDef("score_threshold", 0.3, "Scores below this count as 'target not seen'.", low=0.0, high=1.0),
    ParamDef("lost_frames", 5, "Consecutive frames below score_threshold before the state is LOST.",
             low=1, high=100000),
    ParamDef("lost_search_scale", 2.0, "Search-region scale asked of trackers that offer "
             "set_search_scale() while the target is LOST.", low=1.0, high=10.0),
    ParamDef("image_transport", "raw", "Input: 'raw' subscribes to image (sensor_msgs/Image), "
             "'compressed' to image/compressed (sensor_msgs/CompressedImage).",
             choices=("raw", "compressed"), read_only=True),
    ParamDef("image_reliability", "best_effort", "QoS reliability of the image subscription "
             "(best_effort = sensor-data profile).", choices=("best_effort", "reliable"), read_only=True),
    ParamDef("frame_buffer_size", 30, "Recent frames kept so that init_target can name a stamp.",
             low=1, high=1000, read_only=True),
    ParamDef("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", low=0.1, high=60.0,
             read_only=True),
)
NODE_PARAM_NAMES = {p.name: p for p in NODE_PARAMS}


def validate_node_param(name: str, value: Any) -> str | None:
    """Reason why ``value`` is not acceptable for node parameter ``name``, or None."""
    definition = NODE_PARAM_NAMES.get(name)
    if definition is None:
        return None
    if definition.choices and value not in definition.choices:
        return f"{name} must be one of {', '.join(definition.choices)}, got '{value}'"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{name} must be finite, got {value}"
    if definition.low is not None and not definition.low <= value <= definition.high:
        return f"{name} must be in [{definition.low}, {definition.high}], got {value}"
    if name == "tracker":
        return _check_tracker(value)
    if name == "weights" and value and value != "random":
        path = Path(value).expanduser()
        if not path.is_file():
            return f"weights file not found: '{value}'"
    if name == "device":
        return _check_device(value)
    return None


def _check_tracker(name: str) -> str | None:
    from siam_tracking_ros.trackers import list_trackers

    known = list_trackers()
    if name not in known:
        return f"unknown tracker '{name}'; known: {', '.join(known) or 'none registered'}"
    return None


def _check_device(text: str) -> str | None:
    from siam_tracking_ros.core.device import DeviceError, resolve_device

    if not _DEVICE_PATTERN.match(str(text).strip().lower()):
        return f"device must be auto, cpu, cuda or cuda:N, got '{text}'"
    try:
        resolve_device(text)
    except DeviceError as exc:
        return str(exc)
    return None


# --- tracker hyper-parameters ------------------------------------------------------------------
@dataclass(frozen=True)
class TrackerParam:
    """One ``tracker_params.<field>`` parameter derived from a config dataclass field."""

    field: str
    value: Any
    descriptor: ParameterDescriptor

    @property
    def name(self) -> str:
        return PREFIX + self.field


def _ros_value(value: Any) -> Any:
    """A config value as a ROS parameter value, or None when it has no ROS type."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple) and value:
        items = list(value)
        if all(isinstance(v, bool) for v in items) or all(isinstance(v, str) for v in items):
            return items
        if all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            return items
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in items):
            return [float(v) for v in items]
    return None


def _optional_type(config_cls: type, name: str) -> Any:
    """The ROS type of an ``X | None`` field left at None (declared without a value), or None."""
    from rclpy.parameter import Parameter

    try:
        hint = typing.get_type_hints(config_cls).get(name)
    except Exception:  # unresolvable annotations
        return None
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    kinds = {bool: Parameter.Type.BOOL, int: Parameter.Type.INTEGER, float: Parameter.Type.DOUBLE,
             str: Parameter.Type.STRING}
    return kinds.get(args[0]) if len(args) == 1 else None


def tracker_params(config: Any) -> list[TrackerParam]:
    """``tracker_params.*`` of a config instance (its current values as defaults).

    A field of type ``X | None`` left at None is declared typed but unset (the variant picks
    its value); setting it overrides that.
    """
    if not dataclasses.is_dataclass(config):
        return []
    out = []
    for item in dataclasses.fields(config):
        raw = getattr(config, item.name)
        value = _ros_value(raw) if raw is not None else _optional_type(type(config), item.name)
        if value is None:
            continue
        meta = item.metadata or {}
        help_text = meta.get("help") or meta.get("doc") or f"{type(config).__name__}.{item.name}"
        descriptor = ParameterDescriptor(
            name=PREFIX + item.name,
            description=f"{help_text} (variant hyper-parameter; changing it rebuilds the tracker)")
        low, high = meta.get("min"), meta.get("max")
        if low is not None and high is not None and not isinstance(value, bool):
            if isinstance(value, int):
                descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
            elif isinstance(value, float):
                descriptor.floating_point_range = [FloatingPointRange(from_value=float(low),
                                                                      to_value=float(high))]
        out.append(TrackerParam(item.name, value, descriptor))
    return out


def base_config(tracker: str, weights: str) -> Any:
    """The config a build would use without overrides: defaults updated by a project file's config.

    Reads only the safetensors header (cheap). Official checkpoints store no config.
    """
    import json

    from siam_tracking_ros.trackers import make_config

    stored: dict[str, Any] = {}
    if weights and weights.endswith(".safetensors") and Path(weights).is_file():
        from siam_tracking_ros.weights.io import WeightsError, read_metadata

        try:
            stored = json.loads(read_metadata(weights).get("config", "{}"))
        except (WeightsError, ValueError):
            stored = {}
    return make_config(tracker, stored)


def coerce_like(value: Any, like: Any) -> Any:
    """``value`` converted to the type of ``like`` where that is lossless (int -> float, list -> tuple)."""
    if isinstance(like, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(like, tuple) and isinstance(value, list):
        return tuple(value)
    return value


def overrides_from(values: dict[str, Any], base: Any) -> tuple[tuple[str, Any], ...]:
    """The ``tracker_params`` values that differ from ``base`` (what to pass to build_tracker)."""
    out = []
    for name, value in sorted(values.items()):
        if value is None:
            continue  # unset optional field: the variant's own value
        current = getattr(base, name, None)
        converted = coerce_like(value, current)
        if current is None or _ros_value(converted) != _ros_value(current):
            out.append((name, converted))
    return tuple(out)
