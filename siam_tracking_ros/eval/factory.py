"""Build trackers by name for evaluation and benchmarks: registry variants and OpenCV baselines,
with per-tracker weights (``--weights NAME=PATH``) and config overrides (``--option [NAME:]k=v``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from siam_tracking_ros.eval.baselines import BASELINES, build_baseline, is_baseline


@dataclass
class TrackerRequest:
    """How to build one named tracker."""

    name: str
    weights: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def parse_weights(specs: Sequence[str] | None, names: Sequence[str]) -> dict[str, str]:
    """Map tracker names to weight paths.

    Each spec is ``NAME=PATH`` or a plain ``PATH``; a plain path is allowed only when exactly one
    non-baseline tracker is requested. ``random`` (untrained network) is accepted as a path.
    """
    variants = [n for n in names if not is_baseline(n)]
    out: dict[str, str] = {}
    for spec in specs or []:
        key, sep, value = spec.partition("=")
        if sep and key in names:
            out[key] = value
            continue
        if len(variants) != 1:
            raise ValueError(f"--weights {spec!r}: give NAME=PATH when several (or no) variants are "
                             f"requested (variants: {variants or 'none'})")
        out[variants[0]] = spec
    for name in out:
        if is_baseline(name):
            raise ValueError(f"--weights: {name} is an OpenCV baseline (use --nano-backbone/--nano-neckhead)")
    return out


def parse_options(specs: Sequence[str] | None, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``k=v`` applies to every variant, ``NAME:k=v`` to one. Values are parsed as YAML scalars."""
    variants = [n for n in names if not is_baseline(n)]
    out: dict[str, dict[str, Any]] = {n: {} for n in variants}
    for spec in specs or []:
        target, key_value = (spec.split(":", 1) if ":" in spec.split("=", 1)[0] else (None, spec))
        key, sep, raw = key_value.partition("=")
        if not sep or not key:
            raise ValueError(f"--option {spec!r}: expected [NAME:]key=value")
        if target is not None and target not in out:
            raise ValueError(f"--option {spec!r}: {target} is not a requested variant ({variants})")
        value = yaml.safe_load(raw) if raw else ""
        for name in [target] if target else variants:
            out[name][key] = value
    return out


def build_requests(names: Sequence[str], weights: Sequence[str] | None,
                   options: Sequence[str] | None) -> list[TrackerRequest]:
    """Validated requests for each name (unknown names raise ``KeyError`` listing the known)."""
    known = set(BASELINES) | set(_variant_names())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise KeyError(f"unknown tracker(s) {unknown}; known: {', '.join(sorted(known))}")
    weight_map = parse_weights(weights, names)
    option_map = parse_options(options, names)
    return [TrackerRequest(n, weight_map.get(n), option_map.get(n, {})) for n in names]


def _variant_names() -> list[str]:
    from siam_tracking_ros.trackers.registry import list_trackers

    return list_trackers()


def build(request: TrackerRequest, device: str = "cpu", nano_backbone: str | Path | None = None,
          nano_neckhead: str | Path | None = None) -> Any:
    """Build the tracker a request describes (baselines ignore ``device``: they run on the CPU)."""
    if is_baseline(request.name):
        return build_baseline(request.name, nano_backbone, nano_neckhead)
    from siam_tracking_ros.trackers.registry import build_tracker

    return build_tracker(request.name, weights=request.weights, device=device, **request.options)
