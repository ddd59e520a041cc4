"""``siam-train cache``: pre-crop every source into one compact ``.npz`` file.

Each kept frame is cropped once around its target (``region`` x the exemplar context, stored at
``region * exemplar_size`` pixels so templates keep full resolution) and stored JPEG-encoded as
uint8 bytes, with its box in crop pixels (and a PNG mask where the data has one). Training reads
the file back as ordinary sources, so augmentation is unchanged; a few thousand frames fit in
64 MiB, small enough to travel with a run to a lent GPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from siam_tracking_ros.train.augment import AugmentSpec, crop_affine, map_box
from siam_tracking_ros.train.sources import Source, Track


def _encode(image: np.ndarray, ext: str, params: list[int]) -> np.ndarray:
    ok, data = cv2.imencode(ext, image, params)
    if not ok:
        raise OSError(f"cannot encode {ext}")
    return data.reshape(-1)


def _pick_frames(track: Track, limit: int) -> np.ndarray:
    """Up to ``limit`` annotated frames spread evenly over the track."""
    valid = track.valid
    if len(valid) <= limit:
        return valid
    return valid[np.linspace(0, len(valid) - 1, limit).round().astype(int)]


def crop_for_cache(image: np.ndarray, box: np.ndarray, mask: np.ndarray | None, region: float,
                   exemplar_size: int, context: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The un-augmented crop around ``box`` covering ``region`` exemplar contexts."""
    size = round(region * exemplar_size)
    affine = crop_affine(box, size, region, AugmentSpec(), np.random.default_rng(0), context)
    mean = [float(v) for v in image.reshape(-1, 3).mean(axis=0)]
    crop = cv2.warpAffine(image, affine, (size, size), flags=cv2.INTER_AREA,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=mean)
    if mask is not None:
        mask = cv2.warpAffine(mask, affine, (size, size), flags=cv2.INTER_LINEAR)
    return crop, map_box(box, affine), mask


def build_cache(sources: list[Source], out: str | Path, frames_per_track: int = 40, region: float = 3.0,
                exemplar_size: int = 127, context: float = 0.5, quality: int = 90) -> dict[str, int]:
    """Write ``out`` (.npz); returns counts (frames, tracks, bytes)."""
    jpegs, masks, boxes, track_ids, mask_index = [], [], [], [], []
    names, categories, owners, gaps = [], [], [], []
    for source_index, source in enumerate(sources):
        for track in source.tracks:
            chosen = _pick_frames(track, frames_per_track)
            track_id = len(names)
            names.append(track.name)
            categories.append(track.category or "")
            owners.append(source_index)
            spacing = max(len(track.valid) / max(len(chosen), 1), 1.0)
            gaps.append(max(round(source.frame_gap / spacing), 1))
            for index in chosen:
                image, mask = track.load(int(index))
                crop, box, crop_mask = crop_for_cache(image, track.boxes[index], mask, region,
                                                      exemplar_size, context)
                jpegs.append(_encode(crop, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, quality]))
                mask_index.append(len(masks) if crop_mask is not None else -1)
                if crop_mask is not None:
                    masks.append(_encode((crop_mask > 0.5).astype(np.uint8) * 255, ".png", []))
                boxes.append(box)
                track_ids.append(track_id)
    arrays = {
        "jpeg": np.concatenate(jpegs), "jpeg_offsets": np.cumsum([0] + [len(j) for j in jpegs]),
        "mask_png": np.concatenate(masks) if masks else np.zeros(0, np.uint8),
        "mask_offsets": np.cumsum([0] + [len(m) for m in masks]),
        "mask_index": np.asarray(mask_index, np.int64), "boxes": np.asarray(boxes, np.float32),
        "track": np.asarray(track_ids, np.int64), "track_names": np.asarray(names),
        "track_categories": np.asarray(categories), "track_source": np.asarray(owners, np.int64),
        "track_gap": np.asarray(gaps, np.int64),
        "source_names": np.asarray([s.name for s in sources]),
        "source_weights": np.asarray([s.weight for s in sources], np.float64),
        "meta": np.asarray(json.dumps({"region": region, "exemplar_size": exemplar_size,
                                       "context": context, "format": 1})),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)
    return {"frames": len(jpegs), "tracks": len(names), "bytes": out.stat().st_size}


class _CachedFrames:
    """Decodes one track's frames from the cache arrays."""

    def __init__(self, data: dict[str, np.ndarray], rows: np.ndarray) -> None:
        self.data = data
        self.rows = rows

    def __call__(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        row = int(self.rows[index])
        start, stop = self.data["jpeg_offsets"][row], self.data["jpeg_offsets"][row + 1]
        image = cv2.imdecode(self.data["jpeg"][start:stop], cv2.IMREAD_COLOR)
        mask = None
        mask_row = int(self.data["mask_index"][row])
        if mask_row >= 0:
            m0, m1 = self.data["mask_offsets"][mask_row], self.data["mask_offsets"][mask_row + 1]
            mask = (cv2.imdecode(self.data["mask_png"][m0:m1], cv2.IMREAD_GRAYSCALE) > 0).astype(np.float32)
        return image, mask


def cached_sources(path: str | Path) -> list[Source]:
    """The sources stored in a cache file (weights and frame gaps as cached)."""
    with np.load(str(path), allow_pickle=False) as npz:
        data = {key: npz[key] for key in npz.files}
    groups: dict[int, list[Track]] = {}
    gaps: dict[int, int] = {}
    for track_id, name in enumerate(data["track_names"]):
        rows = np.flatnonzero(data["track"] == track_id)
        owner = int(data["track_source"][track_id])
        category = str(data["track_categories"][track_id]) or None
        track = Track(str(name), data["boxes"][rows].astype(np.float64), _CachedFrames(data, rows), category)
        groups.setdefault(owner, []).append(track)
        gaps[owner] = max(gaps.get(owner, 1), int(data["track_gap"][track_id]))
    return [Source(str(data["source_names"][i]), tracks, float(data["source_weights"][i]), gaps[i])
            for i, tracks in sorted(groups.items())]
