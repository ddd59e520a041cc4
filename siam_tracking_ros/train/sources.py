"""Training data sources: labelled sequences (OTB, VOT, GOT-10k, LaSOT layouts) and static
images with boxes (YOLO txt, COCO json), all seen as *tracks*: one object, one or more frames.

A static image object is a one-frame track; the pair sampler makes template and search from
the same frame with different augmentations.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from siam_tracking_ros.data.sequences import IMAGE_SUFFIXES, Sequence, find_sequences

#: returns the frame (BGR uint8) and the object mask (float32 0..1) or None
FrameLoader = Callable[[int], tuple[np.ndarray, np.ndarray | None]]


@dataclass
class Track:
    """One object over ``len(boxes)`` frames; ``load(i)`` gives frame ``i`` (and its mask)."""

    name: str
    boxes: np.ndarray
    load: FrameLoader
    category: str | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.valid = np.flatnonzero(np.isfinite(self.boxes).all(axis=1)
                                    & (self.boxes[:, 2:] >= 2.0).all(axis=1))

    def __len__(self) -> int:
        return len(self.boxes)


@dataclass
class Source:
    """A named set of tracks with a sampling weight and the frame gap for pairs."""

    name: str
    tracks: list[Track]
    weight: float = 1.0
    frame_gap: int = 100
    by_category: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tracks = [t for t in self.tracks if t.valid.size > 0]
        if not self.tracks:
            raise ValueError(f"data source '{self.name}' has no usable annotated object")
        groups: dict[str, list[int]] = {}
        for index, track in enumerate(self.tracks):
            if track.category is not None:
                groups.setdefault(track.category, []).append(index)
        self.by_category = groups


def read_image(path: Path) -> np.ndarray:
    """A BGR uint8 image; ``OSError`` if it cannot be read."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"cannot read image {path}")
    return image


def read_mask(path: Path) -> np.ndarray:
    """A mask image as float32 0..1 (any non-zero pixel is object)."""
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise OSError(f"cannot read mask {path}")
    return (mask > 0).astype(np.float32)


def sequence_track(sequence: Sequence) -> Track:
    """A :class:`Track` over a loaded sequence (with its masks where it has them)."""
    frames, masks = list(sequence.frames), sequence.masks

    def load(index: int) -> tuple[np.ndarray, np.ndarray | None]:
        mask = read_mask(masks[index]) if masks and index < len(masks) else None
        return read_image(frames[index]), mask

    return Track(sequence.name, sequence.boxes, load, sequence.meta.get("category"))


def sequence_tracks(root: str | Path, names: list[str] | None = None,
                    exclude: list[str] | None = None) -> list[Track]:
    """Tracks of every sequence under ``root`` (any supported layout) minus ``exclude``."""
    sequences = find_sequences(root, names)
    excluded = set(exclude or [])
    return [sequence_track(s) for s in sequences if s.name not in excluded]


def _image_track(name: str, path: Path, box: np.ndarray, category: str) -> Track:
    return Track(name, box[None], lambda _index: (read_image(path), None), category)


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def yolo_tracks(images: str | Path, labels: str | Path, min_size: float = 8.0) -> list[Track]:
    """One track per box of a YOLO-format folder pair (``class cx cy w h`` normalised lines)."""
    images, labels = Path(images), Path(labels)
    tracks = []
    for image_path in sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        label_path = labels / f"{image_path.stem}.txt"
        if not label_path.is_file():
            continue
        width, height = _image_size(image_path)
        for row, line in enumerate(label_path.read_text().splitlines()):
            parts = line.split()
            if len(parts) < 5:
                continue
            cls, cx, cy, w, h = parts[0], *(float(v) for v in parts[1:5])
            box = np.array([(cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height])
            if min(box[2], box[3]) >= min_size:
                tracks.append(_image_track(f"{image_path.stem}#{row}", image_path, box, cls))
    return tracks


def coco_tracks(annotations: str | Path, images: str | Path, min_size: float = 8.0) -> list[Track]:
    """One track per non-crowd box of a COCO ``instances_*.json`` (``bbox`` is ``x, y, w, h``)."""
    data = json.loads(Path(annotations).read_text())
    files = {image["id"]: Path(images) / image["file_name"] for image in data["images"]}
    tracks = []
    for ann in data["annotations"]:
        box = np.asarray(ann["bbox"], dtype=np.float64)
        if ann.get("iscrowd", 0) or min(box[2], box[3]) < min_size:
            continue
        path = files[ann["image_id"]]
        tracks.append(_image_track(f"{path.stem}#{ann['id']}", path, box, str(ann["category_id"])))
    return tracks
