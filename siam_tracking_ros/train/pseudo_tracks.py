"""Teacher-labelled tracks from unlabelled video (``siam-train videos`` and ``siam-train pseudo-label``).

The labelled sequences are few; unlabelled clips are not. A teacher tracker (the official NanoTrack
checkpoint, never shipped) follows seed boxes through a clip; a track is kept only where the teacher
stays confident and tracking the clip *backwards* from the end of the track lands back on the seed
box (forward-backward agreement). Kept tracks are written as OTB-layout sequence folders (``img/``,
1-based ``groundtruth.txt``, ``meta.json``) outside the repository, so ``type: sequences`` reads them
like any labelled data.

Seed boxes: connected regions that move between nearby frames (static cameras), else patches
centred on dense image corners (anything trackable).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from siam_tracking_ros.core.geometry import iou_xywh
from siam_tracking_ros.train.pretrained import file_sha256

#: Debian's OpenCV documentation package ships five short clips (BSD-3-Clause, OpenCV samples)
OPENCV_DOC_PACKAGE = "opencv-doc"
OPENCV_DOC_VERSION = "4.6.0+dfsg-12"
OPENCV_DOC_SHA256 = "4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a"
OPENCV_DOC_CLIPS = {
    "usr/share/doc/opencv-doc/examples/data/vtest.avi": "vtest.avi",
    "usr/share/doc/opencv-doc/examples/data/Megamind.avi": "Megamind.avi",
    "usr/share/doc/opencv-doc/examples/data/tree.avi": "tree.avi",
    "usr/share/doc/opencv-doc/opencv4/html/box.mp4.gz": "box.mp4",
    "usr/share/doc/opencv-doc/opencv4/html/cup.mp4.gz": "cup.mp4",
}


def video_cache_dir() -> Path:
    """``~/.cache/siam_tracking_ros/videos``: fetched clips (never committed)."""
    return Path.home() / ".cache" / "siam_tracking_ros" / "videos"


def fetch_opencv_videos(folder: Path | None = None) -> list[Path]:
    """``apt-get download`` the pinned ``opencv-doc`` package once and extract its clips.

    Raises ``OSError`` when the download fails or the package's sha256 is not the pinned one.
    """
    folder = folder or video_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    clips = [folder / name for name in OPENCV_DOC_CLIPS.values()]
    if all(p.is_file() for p in clips):
        return clips
    deb = folder / f"{OPENCV_DOC_PACKAGE}_{OPENCV_DOC_VERSION}_all.deb"
    if not deb.is_file():
        done = subprocess.run(["apt-get", "download", f"{OPENCV_DOC_PACKAGE}={OPENCV_DOC_VERSION}"],
                              cwd=folder, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not deb.is_file():
            raise OSError(f"apt-get download {OPENCV_DOC_PACKAGE}={OPENCV_DOC_VERSION} failed: "
                          f"{done.stderr.strip()[-500:]}")
    found = file_sha256(deb)
    if found != OPENCV_DOC_SHA256:
        raise OSError(f"{deb.name}: sha256 {found} is not the pinned {OPENCV_DOC_SHA256}")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        for member, name in OPENCV_DOC_CLIPS.items():
            _copy_clip(Path(tmp) / member, folder / name)
    return clips


def _copy_clip(source: Path, target: Path) -> None:
    if source.suffix == ".gz":
        import gzip

        with gzip.open(source, "rb") as packed, open(target, "wb") as out:
            shutil.copyfileobj(packed, out)
    else:
        shutil.copyfile(source, target)


@dataclass
class PseudoLabelSpec:
    """How tracks are seeded, followed and accepted."""

    length: int = 100            # frames per track at most
    seeds_per_video: int = 8     # seed frames spread over each clip
    boxes_per_seed: int = 3      # seed boxes per seed frame
    min_score: float = 0.6       # a track ends at the first frame the teacher's score falls below
    min_frames: int = 20         # shorter tracks are dropped
    min_seed_iou: float = 0.6    # backward tracking must land this close to the seed box
    min_mean_iou: float = 0.6    # mean IoU between the forward and the backward boxes
    max_side: int = 640          # frames are downscaled so their long side is at most this
    settle_steps: int = 5        # the seed box is refined by tracking its own frame this often
    seed: int = 0


def read_video(path: str | Path, max_side: int) -> list[np.ndarray]:
    """Every frame of a clip (BGR uint8), downscaled to ``max_side``; ``OSError`` if unreadable."""
    capture = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        scale = max_side / max(frame.shape[:2])
        if scale < 1.0:
            frame = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        frames.append(frame)
    capture.release()
    if not frames:
        raise OSError(f"{path}: no readable frames")
    return frames


def motion_boxes(frame: np.ndarray, later: np.ndarray) -> list[np.ndarray]:
    """Boxes of regions that changed between two frames, when the camera looks static."""
    height, width = frame.shape[:2]
    gray = [cv2.GaussianBlur(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), (5, 5), 0) for f in (frame, later)]
    moving = (cv2.absdiff(gray[0], gray[1]) > 25).astype(np.uint8)
    if moving.mean() > 0.3:          # the whole view moves: a moving camera, not objects
        return []
    moving = cv2.morphologyEx(moving, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(moving)
    boxes = []
    for x, y, w, h, area in stats[1:count]:
        if 0.002 <= w * h / (width * height) <= 0.15 and min(w, h) >= 8 and area >= 0.2 * w * h:
            boxes.append(np.array([x, y, w, h], dtype=np.float64))
    return sorted(boxes, key=lambda b: -b[2] * b[3])


def corner_boxes(frame: np.ndarray, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Patches (10-35 % of the short side, aspect 0.5-2) centred where corners are densest."""
    height, width = frame.shape[:2]
    corners = cv2.goodFeaturesToTrack(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), 300, 0.01, 5)
    if corners is None:
        return []
    points = corners.reshape(-1, 2)
    candidates = []
    for _ in range(60):
        side = rng.uniform(0.10, 0.35) * min(width, height)
        aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
        w, h = side * np.sqrt(aspect), side / np.sqrt(aspect)
        cx, cy = points[rng.integers(len(points))]
        box = np.array([np.clip(cx - w / 2, 0, width - w), np.clip(cy - h / 2, 0, height - h), w, h])
        inside = ((points[:, 0] >= box[0]) & (points[:, 0] < box[0] + w)
                  & (points[:, 1] >= box[1]) & (points[:, 1] < box[1] + h)).sum()
        candidates.append((inside / np.sqrt(w * h), box))
    candidates.sort(key=lambda c: -c[0])
    return _distinct([box for _, box in candidates], count)


def _distinct(boxes: Iterable[np.ndarray], count: int, max_iou: float = 0.3) -> list[np.ndarray]:
    kept: list[np.ndarray] = []
    for box in boxes:
        if all(iou_xywh(box, other) < max_iou for other in kept):
            kept.append(box)
        if len(kept) == count:
            break
    return kept


def seed_boxes(frames: list[np.ndarray], index: int, count: int,
               rng: np.random.Generator) -> list[np.ndarray]:
    """Up to ``count`` seed boxes at ``frames[index]``: moving regions first, then corner patches."""
    later = frames[min(index + 3, len(frames) - 1)]
    boxes = motion_boxes(frames[index], later) if later is not frames[index] else []
    return _distinct(boxes + corner_boxes(frames[index], count, rng), count)


def follow(tracker, frames: list[np.ndarray], box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The tracker's boxes and scores over ``frames`` after initialising on ``frames[0]`` at ``box``."""
    tracker.init(frames[0], tuple(float(v) for v in box))
    boxes, scores = [np.asarray(box, dtype=np.float64)], [1.0]
    for frame in frames[1:]:
        result = tracker.track(frame)
        boxes.append(np.asarray(result.box, dtype=np.float64))
        scores.append(float(result.extra.get("raw_score", result.score)))
    return np.stack(boxes), np.asarray(scores)


def settle(tracker, frame: np.ndarray, box: np.ndarray, steps: int) -> np.ndarray:
    """The box the tracker converges to when it tracks ``frame`` itself from ``box`` (a seed from
    motion or corners becomes the object extent the teacher sees there)."""
    tracker.init(frame, tuple(float(v) for v in box))
    for _ in range(steps):
        box = np.asarray(tracker.track(frame).box, dtype=np.float64)
    return np.asarray(box, dtype=np.float64)


def pseudo_track(tracker, frames: list[np.ndarray], box: np.ndarray,
                 spec: PseudoLabelSpec) -> np.ndarray | None:
    """Boxes over the confident, forward-backward consistent prefix of ``frames``, or None."""
    box = settle(tracker, frames[0], box, spec.settle_steps)
    forward, scores = follow(tracker, frames, box)
    weak = np.flatnonzero(scores < spec.min_score)
    end = int(weak[0]) if weak.size else len(frames)
    if end < spec.min_frames:
        return None
    backward, _ = follow(tracker, frames[:end][::-1], forward[end - 1])
    backward = backward[::-1]
    agreement = iou_xywh(forward[:end], backward)
    if iou_xywh(backward[0], box) < spec.min_seed_iou or agreement.mean() < spec.min_mean_iou:
        return None
    return forward[:end]


def write_track(folder: Path, frames: list[np.ndarray], boxes: np.ndarray, meta: dict) -> None:
    """One OTB-layout sequence folder: ``img/0001.jpg...``, 1-based ``groundtruth.txt``, ``meta.json``."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames, start=1):
        cv2.imwrite(str(folder / "img" / f"{index:04d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 92])
    rows = [f"{x + 1:.2f},{y + 1:.2f},{w:.2f},{h:.2f}" for x, y, w, h in boxes]
    (folder / "groundtruth.txt").write_text("\n".join(rows) + "\n")
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))


def pseudo_label_video(tracker, video: Path, out: Path, spec: PseudoLabelSpec, teacher: str) -> list[dict]:
    """Seed, follow and keep tracks of one clip; returns one summary row per seed."""
    frames = read_video(video, spec.max_side)
    rng = np.random.default_rng(spec.seed)
    last_start = max(len(frames) - spec.min_frames, 1)
    starts = np.unique(np.linspace(0, last_start - 1, spec.seeds_per_video).round().astype(int))
    rows = []
    for start in starts:
        clip = frames[start:start + spec.length]
        for number, box in enumerate(seed_boxes(frames, int(start), spec.boxes_per_seed, rng)):
            boxes = pseudo_track(tracker, clip, box, spec)
            name = f"pseudo_{video.stem}_{start:05d}_{number}"
            kept = boxes is not None
            rows.append({"track": name, "kept": kept, "frames": len(boxes) if kept else 0})
            if boxes is not None:
                write_track(out / name, clip[:len(boxes)], boxes, {
                    "name": name, "source_video": video.name, "first_frame_index": int(start),
                    "pseudo_labels": {"teacher": teacher, **asdict(spec)}})
    return rows


def pseudo_label_videos(videos: list[Path], teacher_weights: str, out: Path, spec: PseudoLabelSpec,
                        teacher_options: dict | None = None) -> dict:
    """Pseudo-label every clip into ``out`` (replacing its previous tracks); returns a summary."""
    from siam_tracking_ros.trackers.registry import build_tracker

    tracker = build_tracker("nanotrack", weights=teacher_weights, device="cpu", **(teacher_options or {}))
    if out.is_dir():
        for old in out.glob("pseudo_*"):
            if old.is_dir():
                shutil.rmtree(old)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for number, video in enumerate(videos, start=1):
        found = pseudo_label_video(tracker, Path(video), out, spec, Path(teacher_weights).name)
        kept = [r for r in found if r["kept"]]
        print(f"[{number}/{len(videos)}] {Path(video).name}: kept {len(kept)} of {len(found)} tracks, "
              f"{sum(r['frames'] for r in kept)} frames", file=sys.stderr, flush=True)
        rows.extend(found)
    kept = [r for r in rows if r["kept"]]
    summary = {"videos": [str(v) for v in videos], "seeds": len(rows), "tracks": len(kept),
               "frames": sum(r["frames"] for r in kept), "spec": asdict(spec), "rows": rows}
    (out / "pseudo_labels.json").write_text(json.dumps(summary, indent=1))
    return summary
