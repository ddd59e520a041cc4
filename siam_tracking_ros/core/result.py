"""The one result type every tracker returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class TrackResult:
    """Outcome of tracking one frame.

    Attributes:
        box: axis-aligned box ``(x, y, w, h)`` in source-image pixels, top-left origin (0-based).
        score: confidence in ``[0, 1]``; falls when the target is gone.
        polygon: optional ``(4, 2)`` float array of rotated-box corners in source pixels.
        mask: optional ``(H, W)`` uint8 mask (0/255) the size of the source frame.
        extra: variant-specific diagnostics (raw score, search scale, ...).
    """

    box: tuple[float, float, float, float]
    score: float
    polygon: np.ndarray | None = None
    mask: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Pytracking-style view: ``target_bbox``, ``segmentation``, ``object_presence_score``."""
        out: dict[str, Any] = {
            "target_bbox": list(self.box),
            "object_presence_score": float(self.score),
        }
        if self.mask is not None:
            out["segmentation"] = self.mask
        if self.polygon is not None:
            out["polygon"] = self.polygon.tolist()
        return out
