"""Helpers for result files of siam-eval and siam-bench: JSON-safe values, machine description."""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch


def json_safe(value: Any) -> Any:
    """``value`` with numpy scalars made plain and non-finite floats made ``None`` (for JSON)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return value


def machine_info() -> dict[str, Any]:
    """Where the numbers were measured."""
    info = {"host": platform.node(), "cpu": _cpu_name(), "cores": _cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__, "opencv": cv2.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
