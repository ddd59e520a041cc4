"""Parameters of the tracker node: declarations with descriptions and ranges, and validation.

Node-level parameters are listed in :data:`NODE_PARAMS`. A variant's hyper-parameters become
``tracker_params.<field>``, derived from its config dataclass with :func:`dataclasses.fields`, so a
new variant needs no edit here. A config field may carry ``metadata={"help": ..., "min": ...,
"max": ...}``; those become the descriptor's description and range.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from siam_tracking_ros.core.config_check import field_range

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
    ParamDef("backend", "auto", "Inference backend: auto (onnxruntime on CPU for static-shape variants, "
             "else torch), torch or onnxruntime.", choices=("auto", "torch", "onnxruntime"), reloads=True),
    ParamDef("score_threshold", 0.5, "A frame scoring at or above this counts as 'target seen' (the score "
             "is meant as the probability that the box holds the target).", low=0.0, high=1.0),
    ParamDef("lost_frames", 5, "Consecutive frames below score_threshold before the state is LOST.",
             low=1, high=100000),
    ParamDef("found_frames", 2, "Consecutive frames at or above score_threshold and found_threshold "
             "while LOST before the state is TRACKING again.", low=1, high=100000),
    ParamDef("found_threshold", 0.7, "While LOST a frame counts as 'target seen' "
             "only at or above this and score_threshold (hysteresis against look-alikes found by the "
             "wider search).", low=0.0, high=1.0),
    ParamDef("lost_search_scale", 2.0, "Search-region scale asked of trackers that offer "
             "set_search_scale() while the target is LOST (1 = normal).", low=1.0, high=10.0),
    ParamDef("threads", 0, "Inference threads (torch and OpenCV, ORT intra-op with backend "
             "onnxruntime); 0 = this machine's default: half the CPUs, 1 to 4, leaving the rest to DDS and "
             "the executor.", low=0, high=256, reloads=True),
    ParamDef("max_image_pixels", 33_177_600, "Images with more pixels than this (8K UHD by default) are "
             "refused before decoding (a compressed image's size is read from its header) and counted.",
             low=1, high=1_000_000_000),
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
        return _check_weights_file(Path(value).expanduser())
    if name == "device":
        return _check_device(value)
    return None


def _check_weights_file(path: Path) -> str | None:
    if not path.exists():
        return f"weights file not found: '{path}'"
    if not path.is_file():
        return f"weights '{path}' is not a regular file"
    if path.stat().st_size == 0:
        return f"weights file '{path}' is empty"
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
        if raw is not None and not isinstance(raw, bool) and isinstance(raw, int | float):
            low, high = field_range(item, raw)  # metadata min/max, else config_check's rules
            if isinstance(value, int):
                descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
            elif isinstance(value, float):
                descriptor.floating_point_range = [FloatingPointRange(from_value=float(low),
                                                                      to_value=float(high))]
        out.append(TrackerParam(item.name, value, descriptor))
    return out


def base_config(tracker: str, weights: str) -> Any:
    """The config a build would use without overrides: defaults updated by what the weights say.

    Empty ``weights`` = the packaged default file. A project ``.safetensors`` file stores its
    config (only the header is read); for an official checkpoint the variant's ``detect_options``
    reads the architecture options off it (cached per file), as the registry does when it builds.
    """
    from siam_tracking_ros.trackers import get_spec, make_config

    stored: dict[str, Any] = {}
    if weights == "random":
        path = None
    else:
        path = Path(weights).expanduser() if weights else get_spec(tracker).default_weights
    if path is not None and path.is_file():
        stat = path.stat()
        stored = _stored_options(tracker, str(path), stat.st_size, stat.st_mtime_ns)
    return make_config(tracker, stored)


@functools.lru_cache(maxsize=16)
def _stored_options(tracker: str, path: str, size: int, mtime_ns: int) -> dict[str, Any]:
    """Config stored in / architecture options detected from a weights file ({} if unreadable)."""
    import json

    from siam_tracking_ros.weights.io import WeightsError, load_checkpoint_safely, read_metadata

    try:
        if path.endswith(".safetensors"):
            return json.loads(read_metadata(path).get("config", "{}"))
        from siam_tracking_ros.trackers import get_spec

        detect = get_spec(tracker).detect_options
        return dict(detect(load_checkpoint_safely(path))) if detect else {}
    except (WeightsError, KeyError, ValueError, OSError):
        return {}  # the build reports what is wrong with the file


def check_weights_for(tracker: str, weights: str) -> str | None:
    """Why ``weights`` cannot be loaded for ``tracker`` (checked before a reload is accepted), or None.

    Reads a project file's header, or loads an official checkpoint (cached per file) and maps its
    keys with the variant's importer; the network is not built.
    """
    if weights == "random" or _check_tracker(tracker):
        return None
    from siam_tracking_ros.trackers import get_spec

    spec = get_spec(tracker)
    path = Path(weights).expanduser() if weights else spec.default_weights
    if not weights and not path.exists():
        return (f"no trained default weights ship for '{tracker}': train them with siam-train or "
                f"pass a weights file")
    reason = _check_weights_file(path)
    if reason:
        return reason
    stat = path.stat()
    return _weights_problem(tracker, str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _weights_problem(tracker: str, path: str, size: int, mtime_ns: int) -> str | None:
    from siam_tracking_ros.trackers import get_spec
    from siam_tracking_ros.weights.io import WeightsError, load_checkpoint_safely, read_metadata

    spec = get_spec(tracker)
    try:
        if path.endswith(".safetensors"):
            variant = read_metadata(path).get("variant", "")
            if variant != tracker:
                return f"weights '{path}' were made for variant '{variant or 'unknown'}', not for '{tracker}'"
            return None
        if spec.importer is None:
            return f"'{tracker}' has no importer for official checkpoints; use a project .safetensors file"
        raw = load_checkpoint_safely(path)
        from siam_tracking_ros.trackers import make_config

        detected = spec.detect_options(raw) if spec.detect_options else {}
        spec.importer(raw, make_config(tracker, detected))
    except WeightsError as exc:
        return str(exc)
    except (KeyError, ValueError) as exc:
        return f"'{path}' does not look like a '{tracker}' checkpoint: {exc}"
    return None


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
