"""NanoTrack's presence score, wider search while LOST and held state (trackers/nanotrack.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from siam_tracking_ros.data.sequences import Sequence
from siam_tracking_ros.trackers import build_tracker


@pytest.fixture(scope="module")
def official_v2(nanotrack_dir: Path) -> Path:
    return nanotrack_dir / "pretrained" / "nanotrackv2.pth"


def test_presence_applies_the_stored_platt_calibration() -> None:
    tracker = build_tracker("nanotrack", weights="random", device="cpu", score_calibration=(2.0, -1.0))
    raw = 0.8
    expected = 1 / (1 + np.exp(-(2.0 * np.log(raw / (1 - raw)) - 1.0)))
    assert tracker.presence(raw) == pytest.approx(expected)
    plain = build_tracker("nanotrack", weights="random", device="cpu")
    assert plain.presence(raw) == raw


def test_published_score_is_the_calibrated_raw_peak(crossing: Sequence, official_v2: Path) -> None:
    tracker = build_tracker("nanotrack", weights=official_v2, device="cpu", score_calibration=(0.5, -2.0))
    tracker.init(crossing.frame(0), crossing.boxes[0])
    result = tracker.track(crossing.frame(1))
    assert result.score == pytest.approx(tracker.presence(result.extra["raw_score"]))
    assert result.score < result.extra["raw_score"]  # a < 1 and b < 0 lower every high score


def test_wider_search_keeps_the_crop_scale_and_grows_the_map(crossing: Sequence, official_v2: Path) -> None:
    tracker = build_tracker("nanotrack", weights=official_v2, device="cpu")
    tracker.init(crossing.frame(0), crossing.boxes[0])
    normal = tracker.track(crossing.frame(1))
    tracker.set_search_scale(2.0)
    assert tracker.instance_size == 511 and tracker.window.size == 32 * 32
    wide = tracker.track(crossing.frame(2))
    assert wide.extra["scale_z"] == pytest.approx(normal.extra["scale_z"], rel=0.1)
    assert wide.score > 0.5  # the walker, still at the trained scale, is found in the wide view
    tracker.set_search_scale(1.0)
    assert tracker.instance_size == 255 and tracker.window.size == 16 * 16
    with pytest.raises(ValueError, match=">= 1"):
        tracker.set_search_scale(0.5)


def test_state_is_held_below_the_hold_threshold(crossing: Sequence, official_v2: Path) -> None:
    tracker = build_tracker("nanotrack", weights=official_v2, device="cpu", hold_below=1.0,
                            score_calibration=(1.0, -5.0))
    tracker.init(crossing.frame(0), crossing.boxes[0])
    start = tracker.center.copy()
    results = [tracker.track(crossing.frame(i)) for i in range(1, 15)]
    assert all(r.extra["held"] for r in results)
    np.testing.assert_array_equal(tracker.center, start)  # the walker moved, the state did not
    moving = build_tracker("nanotrack", weights=official_v2, device="cpu")
    moving.init(crossing.frame(0), crossing.boxes[0])
    for i in range(1, 15):
        moving.track(crossing.frame(i))
    assert np.abs(moving.center - start).max() > 5.0


def test_a_widened_search_stays_on_the_last_state_and_takes_the_find_when_it_narrows(
        crossing: Sequence, official_v2: Path, sequences_dir: Path) -> None:
    """While LOST (widened) on frames of another sequence the search centre does not follow the
    look-alikes it reports (below ``lost_follow_above``; 1.0 here: never); narrowed again on the
    walker's frames, the state is the walker found. With ``lost_follow_above`` 0 it follows."""
    from siam_tracking_ros.core.geometry import iou_xywh
    from siam_tracking_ros.data.sequences import load_sequence

    other = load_sequence(sequences_dir / "vot_bag")
    tracker = build_tracker("nanotrack", weights=official_v2, device="cpu", lost_follow_above=1.0)
    tracker.init(crossing.frame(0), crossing.boxes[0])
    for i in range(1, 6):
        tracker.track(crossing.frame(i))
    center, size = tracker.center.copy(), tracker.size.copy()
    tracker.set_search_scale(2.0)
    height, width = crossing.frame(0).shape[:2]
    reported = [tracker.track(cv2.resize(other.frame(i), (width, height))).box for i in range(10)]
    np.testing.assert_array_equal(tracker.center, center)
    np.testing.assert_array_equal(tracker.size, size)
    assert len({tuple(np.round(b, 3)) for b in reported}) > 1  # best boxes reported, not followed
    found = tracker.track(crossing.frame(6))
    assert float(iou_xywh(np.asarray(found.box), crossing.boxes[6])) > 0.5
    tracker.set_search_scale(1.0)
    cx, cy = found.box[0] + found.box[2] / 2, found.box[1] + found.box[3] / 2
    np.testing.assert_allclose(tracker.center, [cx, cy], atol=1e-6)
    following = tracker.track(crossing.frame(7))
    assert float(iou_xywh(np.asarray(following.box), crossing.boxes[7])) > 0.5
    follower = build_tracker("nanotrack", weights=official_v2, device="cpu", lost_follow_above=0.0)
    follower.init(crossing.frame(0), crossing.boxes[0])
    follower.set_search_scale(2.0)
    moved = follower.track(cv2.resize(other.frame(0), (width, height))).box
    np.testing.assert_allclose(follower.center, [moved[0] + moved[2] / 2, moved[1] + moved[3] / 2], atol=1e-6)
