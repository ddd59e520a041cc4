"""Teacher-labelled tracks from unlabelled video (train/pseudo_tracks.py) on a real sequence."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from siam_tracking_ros.core.geometry import iou_xywh
from siam_tracking_ros.train.pseudo_tracks import (
    PseudoLabelSpec,
    corner_boxes,
    motion_boxes,
    pseudo_label_videos,
    pseudo_track,
    read_video,
)
from siam_tracking_ros.train.sources import sequence_tracks


@pytest.fixture(scope="module")
def teacher(nanotrack_dir: Path):
    from siam_tracking_ros.trackers.registry import build_tracker

    return build_tracker("nanotrack", weights=nanotrack_dir / "pretrained" / "nanotrackv2.pth",
                         device="cpu", version="v2")


@pytest.fixture(scope="module")
def crossing_frames(crossing) -> list[np.ndarray]:
    return [cv2.imread(str(path)) for path in crossing.frames[:40]]


@pytest.fixture(scope="module")
def crossing_video(crossing_frames, tmp_path_factory) -> Path:
    """The first 40 frames of otb_Crossing written as an unlabelled clip."""
    path = tmp_path_factory.mktemp("clip") / "crossing.avi"
    height, width = crossing_frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (width, height))
    for frame in crossing_frames:
        writer.write(frame)
    writer.release()
    return path


def test_a_track_seeded_on_the_real_target_follows_it(teacher, crossing, crossing_frames):
    spec = PseudoLabelSpec(min_frames=10)
    boxes = pseudo_track(teacher, crossing_frames, crossing.boxes[0], spec)
    assert boxes is not None and len(boxes) == len(crossing_frames)
    assert float(iou_xywh(boxes, crossing.boxes[:40]).mean()) > 0.6


def test_a_track_whose_backward_pass_misses_the_seed_is_dropped(teacher, crossing, crossing_frames):
    """A strict forward-backward bar nothing meets: the track is refused, not kept half-right."""
    spec = PseudoLabelSpec(min_frames=10, min_seed_iou=1.01)
    assert pseudo_track(teacher, crossing_frames, crossing.boxes[0], spec) is None


def test_a_blank_clip_gives_no_seed(crossing_frames):
    blank = np.full_like(crossing_frames[0], 128)
    rng = np.random.default_rng(0)
    assert corner_boxes(blank, 2, rng) == []
    assert motion_boxes(blank, blank) == []


def test_the_walker_of_a_static_camera_is_a_motion_seed(crossing, crossing_frames):
    """otb_Crossing: a static camera, one person walking; a moving region overlaps the person."""
    boxes = motion_boxes(crossing_frames[10], crossing_frames[13])
    assert boxes
    assert max(float(iou_xywh(b, crossing.boxes[10])) for b in boxes) > 0.1


def test_kept_tracks_are_sequences_the_training_sources_read(crossing_video, tmp_path, nanotrack_dir):
    spec = PseudoLabelSpec(length=30, seeds_per_video=2, boxes_per_seed=3, min_frames=10)
    out = tmp_path / "tracks"
    summary = pseudo_label_videos([crossing_video], str(nanotrack_dir / "pretrained" / "nanotrackv2.pth"),
                                  out, spec, {"version": "v2"})
    assert summary["seeds"] == len(summary["rows"]) > 0
    assert summary["tracks"] >= 1
    tracks = sequence_tracks(out)
    assert len(tracks) == summary["tracks"]
    frames = read_video(crossing_video, spec.max_side)
    height, width = frames[0].shape[:2]
    for track in tracks:
        image, mask = track.load(0)
        assert image.shape == frames[0].shape and mask is None
        assert np.isfinite(track.boxes).all()
        assert (track.boxes[:, 0] > -track.boxes[:, 2]).all() and (track.boxes[:, 0] < width).all()
        assert (track.boxes[:, 1] > -track.boxes[:, 3]).all() and (track.boxes[:, 1] < height).all()


def test_cli_refuses_unknown_options_and_missing_videos(crossing_video, capsys):
    from siam_tracking_ros.train.cli import main

    assert main(["pseudo-label", str(crossing_video), "--teacher", "x.pth", "--option", "lenght=3"]) == 2
    assert "unknown --option ['lenght']" in capsys.readouterr().err
    assert main(["pseudo-label", "/no/such/clip.mp4", "--teacher", "x.pth"]) == 2
    assert "no such video: /no/such/clip.mp4" in capsys.readouterr().err


def test_written_boxes_read_back_as_the_same_0_based_boxes(crossing, crossing_frames, tmp_path):
    from siam_tracking_ros.train.pseudo_tracks import write_track

    write_track(tmp_path / "pseudo_x", crossing_frames[:5], crossing.boxes[:5], {"name": "pseudo_x"})
    (track,) = sequence_tracks(tmp_path)
    np.testing.assert_allclose(track.boxes, crossing.boxes[:5], atol=0.01)
