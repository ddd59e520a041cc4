"""NanoTrack tracker: official weights track real sequences; weights round trip; contracts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from siam_tracking_ros.core.geometry import iou_xywh
from siam_tracking_ros.data.sequences import Sequence, find_sequences
from siam_tracking_ros.trackers.base import SiameseTracker
from siam_tracking_ros.trackers.registry import build_tracker, get_spec
from siam_tracking_ros.weights.io import WeightsError, save_weights

EASY = "otb_Dudek_first20"


def official(nanotrack_dir: Path, version: str) -> Path:
    return nanotrack_dir / "pretrained" / f"nanotrack{version}.pth"


def track_boxes(tracker: SiameseTracker, sequence: Sequence, frames: int) -> tuple[np.ndarray, list[float]]:
    tracker.init(sequence.frame(0), sequence.boxes[0])
    results = [tracker.track(sequence.frame(i)) for i in range(1, min(frames, len(sequence)))]
    return np.array([r.box for r in results]), [r.score for r in results]


@pytest.fixture(scope="module")
def easy_sequence(sequences_dir: Path) -> Sequence:
    return find_sequences(sequences_dir, [EASY])[0]


def test_nanotrack_registered_with_importer() -> None:
    spec = get_spec("nanotrack")
    assert spec.importer is not None
    assert spec.config_cls().version == "v2"


def test_nanotrack_track_before_init_raises() -> None:
    tracker = build_tracker("nanotrack", weights="random", device="cpu")
    with pytest.raises(RuntimeError, match="before init"):
        tracker.track(np.zeros((120, 160, 3), np.uint8))


def test_nanotrack_unknown_version_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown NanoTrack version 'v9'"):
        build_tracker("nanotrack", weights="random", device="cpu", version="v9")


def test_nanotrack_template_features_computed_once() -> None:
    torch.manual_seed(0)
    tracker = build_tracker("nanotrack", weights="random", device="cpu", version="v3")
    calls = []
    tracker.model.backbone.register_forward_hook(lambda _m, inputs, _o: calls.append(inputs[0].shape[-1]))
    frame = np.random.default_rng(0).integers(0, 255, (180, 240, 3), dtype=np.uint8)
    tracker.init(frame, (100, 60, 40, 30))
    for _ in range(3):
        result = tracker.track(frame)
        assert 0.0 <= result.score <= 1.0
    assert calls == [127, 255, 255, 255]


#: frames of otb_Crossing for the tracking check: the walker crosses the street, and a box left at
#: its first position scores 0.096 mean IoU over frames 1-39 (on otb_Dudek_first20 it scores 0.902)
MOVING_FRAMES = 40


@pytest.mark.shared_data
@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_nanotrack_official_weights_follow_a_moving_target(version: str, crossing: Sequence,
                                                           nanotrack_dir: Path) -> None:
    """Measured mean IoU: v1 0.600, v2 0.710, v3 0.688 (last ten frames 0.63 / 0.73 / 0.68)."""
    tracker = build_tracker("nanotrack", weights=official(nanotrack_dir, version), device="cpu")
    boxes, scores = track_boxes(tracker, crossing, MOVING_FRAMES)
    truth = crossing.boxes[1:MOVING_FRAMES]
    ious = iou_xywh(boxes, truth)
    frozen = iou_xywh(np.repeat(crossing.boxes[:1], len(truth), axis=0), truth)
    assert frozen.mean() < 0.15 and frozen[-10:].max() < 0.05  # the target does move away
    assert ious.mean() > 0.5, ious
    assert ious[-10:].min() > 0.3, ious  # still on the walker at the end, where the first box is empty
    assert min(scores) > 0.5, scores


@pytest.mark.shared_data
def test_nanotrack_version_is_detected_from_official_checkpoint(nanotrack_dir: Path) -> None:
    for version in ("v1", "v3"):
        tracker = build_tracker("nanotrack", weights=official(nanotrack_dir, version), device="cpu")
        assert tracker.config.version == version
        assert tracker.model.version == version


@pytest.mark.shared_data
def test_nanotrack_score_falls_when_target_is_hidden(easy_sequence: Sequence, nanotrack_dir: Path) -> None:
    tracker = build_tracker("nanotrack", weights=official(nanotrack_dir, "v2"), device="cpu")
    first, second = easy_sequence.frame(0), easy_sequence.frame(1)
    tracker.init(first, easy_sequence.boxes[0])
    visible = tracker.track(second).score
    x, y, w, h = (int(v) for v in easy_sequence.boxes[1])
    hidden = second.copy()  # paint over the face and its surroundings with the frame mean
    hidden[max(0, y - h // 2):y + h + h // 2, max(0, x - w // 2):x + w + w // 2] = second.mean(axis=(0, 1))
    tracker.init(first, easy_sequence.boxes[0])
    assert visible > 0.9
    assert tracker.track(hidden).score < 0.5


@pytest.mark.shared_data
def test_nanotrack_round_trip_and_determinism(easy_sequence: Sequence, nanotrack_dir: Path,
                                              tmp_path: Path) -> None:
    tracker = build_tracker("nanotrack", weights=official(nanotrack_dir, "v3"), device="cpu", version="v3")
    boxes, scores = track_boxes(tracker, easy_sequence, 8)
    again, again_scores = track_boxes(tracker, easy_sequence, 8)  # re-init: same result (eval mode)
    np.testing.assert_array_equal(boxes, again)
    assert scores == again_scores
    path = save_weights(tmp_path / "nanotrack_v3.safetensors", tracker.model.state_dict(), "nanotrack",
                        tracker.config)
    restored = build_tracker("nanotrack", weights=path, device="cpu")  # version comes from the file
    assert restored.config.version == "v3"
    restored_boxes, restored_scores = track_boxes(restored, easy_sequence, 8)
    np.testing.assert_array_equal(boxes, restored_boxes)
    assert scores == restored_scores


@pytest.mark.shared_data
def test_nanotrack_wrong_weights_give_clear_errors(nanotrack_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="is NanoTrack v3 but version='v2' was asked for"):
        build_tracker("nanotrack", weights=official(nanotrack_dir, "v3"), device="cpu", version="v2")
    other = tmp_path / "other.safetensors"
    save_weights(other, {"w": torch.zeros(1)}, "siamfc", {})
    with pytest.raises(WeightsError, match="made for variant 'siamfc', not for 'nanotrack'"):
        build_tracker("nanotrack", weights=other, device="cpu")
    foreign = tmp_path / "foreign.pth"
    torch.save({"state_dict": {"features.0.weight": torch.zeros(1)}}, foreign)
    with pytest.raises(WeightsError, match="does not look like a 'nanotrack' checkpoint"):
        build_tracker("nanotrack", weights=foreign, device="cpu")


@pytest.mark.parametrize(("version", "instance_size", "side"),
                         [("v2", 287, 18), ("v2", 271, 17), ("v3", 287, 17)])
def test_a_larger_search_crop_tracks(nanotrack_dir: Path, easy_sequence: Sequence, version: str,
                                     instance_size: int, side: int) -> None:
    """``instance_size`` is an option like any other: the point grid follows the score map's side
    (it was taken relative to the configured size, so anything but 255 crashed)."""
    tracker = build_tracker("nanotrack", weights=str(official(nanotrack_dir, version)), device="cpu",
                            version=version, instance_size=instance_size)
    assert tracker.points.shape == (2, side * side) and tracker.window.shape == (side * side,)
    boxes, _ = track_boxes(tracker, easy_sequence, 20)
    ious = [iou_xywh(b, t) for b, t in zip(boxes, easy_sequence.boxes[1:20], strict=True)]
    assert float(np.mean(ious)) > 0.6, ious
    nominal = build_tracker("nanotrack", weights=str(official(nanotrack_dir, version)), device="cpu",
                            version=version)
    # the grid keeps its centre where the official one has it at 255 px (odd growths included)
    np.testing.assert_allclose(tracker.points.mean(axis=1), nominal.points.mean(axis=1))
