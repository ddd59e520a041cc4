"""Labelled video sequences on disk.

:class:`Sequence` is the one in-memory description used by training, evaluation and tests:
frame paths in order and ground-truth boxes ``(N, 4)`` as 0-based ``x, y, w, h`` floats
(rows of NaN where the target is absent).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


@dataclass
class Sequence:
    """One labelled sequence: frames in order and 0-based ``xywh`` ground truth per frame."""

    name: str
    frames: list[Path]
    boxes: np.ndarray
    masks: list[Path] | None = None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as HxWx3 uint8 BGR."""
        image = cv2.imread(str(self.frames[index]), cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f"cannot read frame {self.frames[index]}")
        return image

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Yield frames ``start..stop`` as BGR arrays."""
        for index in range(start, len(self) if stop is None else stop):
            yield self.frame(index)

    def first_valid(self) -> int:
        """Index of the first frame whose ground truth is present."""
        valid = np.flatnonzero(np.isfinite(self.boxes).all(axis=1) & (self.boxes[:, 2:] > 0).all(axis=1))
        if valid.size == 0:
            raise ValueError(f"sequence {self.name} has no annotated frame")
        return int(valid[0])


def read_boxes(path: Path, one_based: bool = True) -> np.ndarray:
    """Read a ground-truth file of ``x,y,w,h`` rows (comma, tab or space separated).

    ``one_based`` converts the OTB/MATLAB 1-based corner to 0-based. Eight-number rows (VOT
    polygons) become their axis-aligned bounding box. ``nan`` rows stay NaN.
    """
    rows = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        values = [float(v) for v in re.split(r"[,\s]+", line) if v]
        if len(values) == 8:
            xs, ys = values[0::2], values[1::2]
            values = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        if len(values) != 4:
            raise ValueError(f"{path}: expected 4 or 8 numbers per line, got {len(values)}: {line!r}")
        rows.append(values)
    boxes = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    if one_based:
        boxes[:, :2] -= 1.0
    return boxes


def list_images(folder: Path) -> list[Path]:
    """Image files of ``folder`` sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def load_otb_sequence(folder: str | Path) -> Sequence:
    """A sequence in OTB layout: ``img/`` frames and ``groundtruth.txt`` (or ``groundtruth_rect.txt``)."""
    folder = Path(folder)
    frames = list_images(folder / "img")
    gt_path = next((folder / n for n in ("groundtruth.txt", "groundtruth_rect.txt")
                    if (folder / n).exists()), None)
    if gt_path is None:
        raise FileNotFoundError(f"{folder}: no groundtruth.txt")
    boxes = read_boxes(gt_path, one_based=True)
    n = min(len(frames), len(boxes))
    masks = list_images(folder / "mask")[:n] if (folder / "mask").is_dir() else None
    return Sequence(folder.name, frames[:n], boxes[:n], masks)
