"""Drawing of tracking results on frames (debug image of the node, annotated video of the demo)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

STATE_NAMES = {0: "IDLE", 1: "TRACKING", 2: "LOST"}
STATE_COLORS = {0: (200, 200, 200), 1: (0, 220, 0), 2: (0, 0, 255)}


def draw_tracking(frame: np.ndarray, state: int, box: Sequence[float] | None, score: float,
                  fps: float | None = None, polygon: np.ndarray | None = None,
                  mask: np.ndarray | None = None, label: str = "",
                  truth: Sequence[float] | None = None) -> np.ndarray:
    """A BGR copy of ``frame`` with mask tint, box, rotated polygon, state, score and fps."""
    out = frame.copy()
    color = STATE_COLORS.get(state, (255, 255, 255))
    if mask is not None and mask.shape[:2] == out.shape[:2]:
        tint = out.copy()
        tint[mask > 127] = (0.5 * tint[mask > 127] + (0, 90, 0)).astype(np.uint8)
        out = tint
    if truth is not None and np.all(np.isfinite(truth)):
        x, y, w, h = (round(float(v)) for v in truth)
        cv2.rectangle(out, (x, y), (x + w, y + h), (255, 160, 0), 1)
    if box is not None and state != 0:
        x, y, w, h = (round(float(v)) for v in box)
        cv2.rectangle(out, (x, y), (x + w, y + h), color, 2)
    if polygon is not None and len(polygon) >= 3:
        cv2.polylines(out, [np.asarray(polygon, dtype=np.int32).reshape(-1, 1, 2)], True, (255, 0, 255), 1)
    text = f"{STATE_NAMES.get(state, state)} {score:.2f}"
    if fps is not None:
        text += f"  {fps:.1f} fps"
    if label:
        text = f"{label}  {text}"
    cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)
    return out
