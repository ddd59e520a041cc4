"""Ranges of tracker config fields, checked whenever a config is made (library and node).

Every numeric field of every variant's config dataclass gets a range: from the field's
``metadata={"min": ..., "max": ...}`` if it has one, else from the first rule below whose
pattern matches its name, else a generic bound (finite, within ``[-1e6, 1e6]`` for floats,
``[0, 1e6]`` for integers). Sequences are checked element by element; ``None`` (an unset
optional field) and strings/booleans are left to the variant.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

#: (name pattern, low, high), first match wins; inclusive bounds
RULES: tuple[tuple[str, float, float], ...] = (
    (r"^base_size$", 0, 8192),
    (r"^mask_ratio$", 0.1, 10.0),
    (r"^penalty_k$", 0.0, 10.0),
    (r"^context_amount$", 0.0, 10.0),
    (r"^scale_step$", 1.0, 4.0),
    (r"^angle_step$", 0.0, math.pi),
    (r"^search_step$", 1, 8192),
    (r"^min_size$", 0.0, 8192.0),
    (r"^score_bias$", -100.0, 100.0),
    (r"(^|_)size$", 1, 8192),
    (r"stride$", 1, 256),
    (r"(^|_)lr$", 0.0, 1.0),
    (r"influence$", 0.0, 1.0),
    (r"penalty$", 0.0, 1.0),
    (r"threshold$|^confidence_|^hold_below$|coverage$|_ratio$", 0.0, 1.0),
    (r"^anchor_(ratios|scales)$|^scales$", 1e-3, 1e3),
    (r"temperature$|^out_scale$|^width_mult$", 1e-6, 1e6),
    (r"weight$|^lambda_|_lambda$|_sigma$|radius$", 0.0, 1e3),
    (r"(_num|_steps|_grid|_dim|hidden|channels|stages|_samples|_up|candidates|distractors|reduction)$|"
     r"^(num_|max_)|^convs$|^widths$|^stage_blocks$", 1, 100_000),
)
FLOAT_BOUND = 1e6
INT_BOUND = 1_000_000


def field_range(field: dataclasses.Field, value: Any) -> tuple[float, float]:
    """The inclusive range of a numeric config field."""
    meta = field.metadata or {}
    if meta.get("min") is not None and meta.get("max") is not None:
        return float(meta["min"]), float(meta["max"])
    for pattern, low, high in RULES:
        if re.search(pattern, field.name):
            return low, high
    return (0, INT_BOUND) if isinstance(value, int) else (-FLOAT_BOUND, FLOAT_BOUND)


def _numbers(value: Any) -> list[float] | None:
    """The numbers a field holds (one or a sequence), or None for a non-numeric field."""
    items = list(value) if isinstance(value, list | tuple) else [value]
    if not items or any(isinstance(v, bool) or not isinstance(v, int | float) for v in items):
        return None
    return [float(v) for v in items]


def config_problems(config: Any) -> list[str]:
    """Every field of ``config`` outside its range (empty when the config is fine)."""
    problems = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        numbers = None if value is None else _numbers(value)
        if numbers is None:
            continue
        first = value[0] if isinstance(value, list | tuple) else value
        low, high = field_range(field, first)
        bad = [v for v in numbers if not (math.isfinite(v) and low <= v <= high)]
        if bad:
            problems.append(f"{field.name} must be finite and in [{low:g}, {high:g}], got {value!r}")
    exemplar, instance = getattr(config, "exemplar_size", None), getattr(config, "instance_size", None)
    if isinstance(exemplar, int) and isinstance(instance, int) and not problems and instance < exemplar:
        problems.append(f"instance_size ({instance}) must not be smaller than exemplar_size ({exemplar})")
    return problems


def check_config(config: Any, name: str = "") -> Any:
    """Return ``config``; raise ``ValueError`` naming every field outside its range."""
    if dataclasses.is_dataclass(config):
        problems = config_problems(config)
        if problems:
            prefix = f"'{name}' config: " if name else ""
            raise ValueError(prefix + "; ".join(problems))
    return config
