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
    return Sequence(folder.name, frames[:n], boxes[:n], masks, {"layout": "otb"})


# --- VOT, GOT-10k and LaSOT layouts, and automatic detection --------------------------------------

GROUNDTRUTH_NAMES = ("groundtruth.txt", "groundtruth_rect.txt")


def _groundtruth_file(folder: Path) -> Path | None:
    return next((folder / n for n in GROUNDTRUTH_NAMES if (folder / n).is_file()), None)


def _read_flags(path: Path) -> np.ndarray:
    """A 0/1 flag file (one value per line, or comma separated on one line) as a bool array."""
    text = Path(path).read_text()
    return np.asarray([int(float(v)) for v in re.split(r"[,\s]+", text) if v], dtype=bool)


def _mark_absent(boxes: np.ndarray, absent: np.ndarray) -> np.ndarray:
    """Set rows flagged ``absent`` to NaN (the target is not visible there)."""
    n = min(len(boxes), len(absent))
    boxes = boxes.copy()
    boxes[:n][absent[:n]] = np.nan
    return boxes


def _pad_boxes(boxes: np.ndarray, n: int) -> np.ndarray:
    """Extend ``boxes`` with NaN rows to ``n`` frames (GOT-10k test: only the first box is given)."""
    if len(boxes) >= n:
        return boxes[:n]
    return np.vstack([boxes, np.full((n - len(boxes), 4), np.nan)])


def load_vot_sequence(folder: str | Path) -> Sequence:
    """VOT layout: frames in the folder itself or in ``color/``; ``groundtruth.txt`` 0-based.

    Rows are ``x,y,w,h`` rectangles or 8-number polygons (read as their axis-aligned bounding
    box; the polygons are kept in ``meta["polygons"]``). Mask (RLE) annotations are not supported.
    """
    folder = Path(folder)
    image_dir = folder / "color" if (folder / "color").is_dir() else folder
    frames = list_images(image_dir)
    gt_path = folder / "groundtruth.txt"
    first = gt_path.read_text().lstrip()[:1]
    if first.lower() == "m":
        raise ValueError(f"{gt_path}: VOT mask (RLE) annotations are not supported")
    boxes = read_boxes(gt_path, one_based=False)
    n = min(len(frames), len(boxes))
    meta: dict = {"layout": "vot"}
    polygons = _read_polygons(gt_path)
    if polygons is not None:
        meta["polygons"] = polygons[:n]
    return Sequence(folder.name, frames[:n], boxes[:n], None, meta)


def _read_polygons(path: Path) -> np.ndarray | None:
    rows = [[float(v) for v in re.split(r"[,\s]+", line.strip()) if v]
            for line in Path(path).read_text().splitlines() if line.strip()]
    if not rows or any(len(r) != 8 for r in rows):
        return None
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4, 2)


def load_got10k_sequence(folder: str | Path) -> Sequence:
    """GOT-10k layout: frames and ``groundtruth.txt`` (0-based ``x,y,w,h``) in one folder.

    Frames flagged in ``absence.label`` become NaN rows. Test-split sequences give only the first
    box; the remaining frames are NaN (no ground truth).
    """
    folder = Path(folder)
    frames = list_images(folder)
    boxes = _pad_boxes(read_boxes(folder / "groundtruth.txt", one_based=False), len(frames))
    meta: dict = {"layout": "got10k"}
    if (folder / "absence.label").is_file():
        absent = _read_flags(folder / "absence.label")
        boxes = _mark_absent(boxes, absent)
        meta["absent"] = absent
    return Sequence(folder.name, frames, boxes, None, meta)


def load_lasot_sequence(folder: str | Path) -> Sequence:
    """LaSOT layout: ``img/`` frames, ``groundtruth.txt`` (1-based, as the MATLAB toolkit),
    ``full_occlusion.txt`` and ``out_of_view.txt`` (frames flagged in either become NaN rows)."""
    folder = Path(folder)
    frames = list_images(folder / "img")
    boxes = read_boxes(folder / "groundtruth.txt", one_based=True)
    n = min(len(frames), len(boxes))
    boxes = boxes[:n]
    absent = np.zeros(n, dtype=bool)
    for flag_name in ("full_occlusion.txt", "out_of_view.txt"):
        if (folder / flag_name).is_file():
            flags = _read_flags(folder / flag_name)[:n]
            absent[:len(flags)] |= flags
    meta: dict = {"layout": "lasot", "absent": absent, "language": _read_optional(folder / "nlp.txt")}
    return Sequence(folder.name, frames[:n], _mark_absent(boxes, absent), None, meta)


def _read_optional(path: Path) -> str | None:
    return path.read_text().strip() if path.is_file() else None


def detect_layout(folder: str | Path) -> str | None:
    """Which layout a sequence folder uses: ``otb``, ``vot``, ``got10k``, ``lasot`` or None."""
    folder = Path(folder)
    if _groundtruth_file(folder) is None:
        return None
    if (folder / "img").is_dir():
        lasot_flags = (folder / "full_occlusion.txt").is_file() or (folder / "out_of_view.txt").is_file()
        return "lasot" if lasot_flags else "otb"
    if any((folder / n).is_file() for n in ("absence.label", "cover.label", "meta_info.ini")):
        return "got10k"
    if (folder / "color").is_dir() or list_images(folder):
        return "vot"
    return None


LOADERS = {
    "otb": load_otb_sequence,
    "vot": load_vot_sequence,
    "got10k": load_got10k_sequence,
    "lasot": load_lasot_sequence,
}


def load_sequence(folder: str | Path, layout: str | None = None) -> Sequence:
    """Load one sequence folder, detecting its layout unless ``layout`` is given."""
    layout = layout or detect_layout(folder)
    if layout is None:
        raise ValueError(f"{folder}: not a sequence folder of a known layout (OTB, VOT, GOT-10k, LaSOT)")
    sequence = LOADERS[layout](folder)
    sequence.meta.setdefault("layout", layout)
    return sequence


def _sequence_dirs(root: Path, depth: int) -> list[Path]:
    """Folders under ``root`` (down to ``depth`` levels) that hold a ground-truth file."""
    if detect_layout(root) is not None:
        return [root]
    if depth == 0:
        return []
    found: list[Path] = []
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        found.extend(_sequence_dirs(child, depth - 1))
    return found


def find_sequences(root: str | Path, names: list[str] | None = None) -> list[Sequence]:
    """All sequences under ``root`` in OTB, VOT, GOT-10k or LaSOT layout, detected per folder.

    ``root`` may be one sequence folder, a dataset folder, or (LaSOT) a folder of class folders.
    ``names`` keeps only sequences whose folder name is listed (order of ``names`` is kept);
    an unknown name raises ``KeyError`` listing the available ones.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such dataset folder")
    folders = {p.name: p for p in _sequence_dirs(root, depth=2)}
    if not folders:
        raise FileNotFoundError(f"{root}: no sequence folders (OTB, VOT, GOT-10k or LaSOT layout) found")
    if names is None:
        return [load_sequence(folders[n]) for n in sorted(folders)]
    missing = [n for n in names if n not in folders]
    if missing:
        raise KeyError(f"unknown sequence(s) {missing} in {root}; available: {', '.join(sorted(folders))}")
    return [load_sequence(folders[n]) for n in names]
