"""trackers/decision.py: the one decision loop and its hooks, against reference paths (issue 11)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from siam_tracking_ros.core.geometry import (
    change_ratio,
    clip_box_xywh,
    iou_xywh,
    padded_size,
    scale_ratio_penalty,
)
from siam_tracking_ros.core.result import TrackResult
from siam_tracking_ros.data.sequences import Sequence
from siam_tracking_ros.trackers.decision import rank_proposals, smoothed_state, still_lost
from siam_tracking_ros.trackers.nanotrack import NanoTracker
from siam_tracking_ros.trackers.registry import build_tracker, list_presets, make_config
from siam_tracking_ros.trackers.siamrpn import SiamRPNTracker

FRAMES = 8


def _boxes(tracker, sequence: Sequence) -> np.ndarray:
    tracker.init(sequence.frame(0), sequence.boxes[0])
    return np.array([tracker.track(sequence.frame(i)).box for i in range(1, FRAMES + 1)])


@pytest.mark.parametrize(("name", "overrides"), [
    ("dasiamrpn", {"width_mult": 0.25, "hidden": 16, "distractor_aware": False, "adaptive": False}),
    ("siamrpnpp", {"backbone": "alexnet", "instance_size": 255}),
    ("siammask", {"instance_size": 159}),
])
def test_hooks_at_rest_give_the_plain_rpn_loop(name: str, overrides: dict, crossing: Sequence) -> None:
    """With its own mechanisms off, a variant tracks exactly as plain SiamRPN on the same network."""
    torch.manual_seed(0)
    variant = build_tracker(name, weights="random", device="cpu", **overrides)
    reference = SiamRPNTracker(variant.model, variant.config, torch.device("cpu"))
    np.testing.assert_allclose(_boxes(variant, crossing), _boxes(reference, crossing), rtol=0, atol=1e-9)


def test_rank_proposals_is_penalised_and_windowed() -> None:
    score = np.array([0.9, 0.5, 0.8])
    boxes = np.array([[0, 0, 10, 10], [0, 0, 20, 20], [0, 0, 10, 30]], dtype=np.float64)
    window = np.array([0.1, 1.0, 0.1])
    props = rank_proposals(score, boxes, np.array([10.0, 10.0]), window, 0.2, 0.5,
                           valid=np.array([True, True, False]))
    assert props.penalty[0] == pytest.approx(1.0)  # same size and ratio: no penalty
    assert props.penalty[1] < 1.0
    assert props.pscore[0] == pytest.approx(0.9 * 0.5 + 0.1 * 0.5)
    assert props.pscore[2] == -1.0


def test_smoothed_state_moves_the_centre_and_blends_the_size() -> None:
    box = np.array([1.0, -2.0, 8.0, 8.0])
    center, size = smoothed_state(np.array([10.0, 20.0]), np.array([4.0, 8.0]), box, 0.25)
    np.testing.assert_allclose(center, [11.0, 18.0])
    np.testing.assert_allclose(size, [5.0, 8.0])


class PreRefactorNanoTracker(NanoTracker):
    """NanoTrack's per-frame arithmetic as it stood before it used the decision pieces (the
    reference the shared :func:`rank_proposals` / :func:`blend_window` / :func:`step_state` path
    must reproduce)."""

    def _track(self, frame: np.ndarray) -> TrackResult:
        cfg = self.config
        side, scale_z = self._search_geometry()
        score, ltrb = self._read_outputs(self.search_pass(self.features, self._crop(frame, side,
                                                                                    self.instance_size)))
        boxes = self._decode(ltrb)
        target_w, target_h = self.size * scale_z
        if cfg.opencv_compat:
            s_c = change_ratio(padded_size(boxes[2], boxes[3]) / padded_size(*self.center))
            r_c = change_ratio((target_w / target_h) / (boxes[2] / boxes[3]))
            penalty = np.exp(-(r_c * s_c - 1.0) * self.penalty_k)
        else:
            penalty = scale_ratio_penalty(boxes[2], boxes[3], target_w, target_h, self.penalty_k)
        pscore = penalty * score * (1 - self.window_influence) + self.window * self.window_influence
        best = int(np.argmax(pscore))
        lr = penalty[best] * score[best] * self.lr
        cx, cy = self.center + (boxes[:2, best] - self.origin) / scale_z
        size = self.size * scale_z / scale_z if cfg.opencv_compat else self.size
        w, h = size * (1 - lr) + boxes[2:, best] / scale_z * lr
        cx, cy, w, h = clip_box_xywh(cx, cy, w, h, frame.shape, cfg.min_size)
        self.center = np.array([cx, cy], self.state_dtype)
        self.size = np.array([w, h], self.state_dtype)
        box = (cx - w / 2, cy - h / 2, w, h)
        if cfg.opencv_compat:
            box = tuple(float(int(v)) for v in box)
        return TrackResult(tuple(float(v) for v in box), float(score[best]))


@pytest.mark.parametrize("opencv_compat", [False, True], ids=["official", "opencv"])
def test_nanotrack_tracks_as_its_pre_refactor_loop(opencv_compat: bool, crossing: Sequence) -> None:
    """The boxes of NanoTrack (packaged weights) through the shared decision pieces equal the
    hand-written loop's on 40 frames of otb_Crossing (IoU >= 0.999 per frame; in fact equal)."""
    tracker = build_tracker("nanotrack", device="cpu", opencv_compat=opencv_compat)
    reference = PreRefactorNanoTracker(tracker.model, tracker.config, torch.device("cpu"))
    frames = 40
    tracker.init(crossing.frame(0), crossing.boxes[0])
    reference.init(crossing.frame(0), crossing.boxes[0])
    got = np.array([tracker.track(crossing.frame(i)).box for i in range(1, frames)])
    expected = np.array([reference.track(crossing.frame(i)).box for i in range(1, frames)])
    assert iou_xywh(got, expected).min() >= 0.999
    np.testing.assert_array_equal(got, expected)
    assert np.ptp(got[:, 0]) > 5.0  # the target moved: the comparison covers real updates


def test_nanotrack_presets_are_the_version_and_opencv_tables() -> None:
    v3 = make_config("nanotrack/v3")
    assert v3.version == "v3" and v3.penalty_k is None  # unset: follows the selecting fields
    assert [v3.preset_value(f) for f in ("window_influence", "penalty_k", "lr")] == [0.455, 0.138, 0.348]
    opencv = make_config("nanotrack/opencv")
    assert opencv.opencv_compat
    assert (opencv.preset_value("penalty_k"), opencv.preset_value("lr")) == (0.055, 0.37)
    assert make_config("nanotrack", version="v1", lr=0.5).preset_value("lr") == 0.5  # explicit values win
    tracker = build_tracker("nanotrack", weights="random", device="cpu", version="v3")
    assert (tracker.window_influence, tracker.penalty_k, tracker.lr) == (0.455, 0.138, 0.348)
    assert {"nanotrack/v1", "nanotrack/v2", "nanotrack/v3", "nanotrack/opencv"} <= set(list_presets())
    with pytest.raises(ValueError, match="no presets"):
        make_config("siamfc/v3")


@pytest.mark.parametrize(("lost", "score", "found_at_high", "expected"), [
    (False, 0.2, True, True),    # below low: lost
    (False, 0.5, True, False),   # between: stays as it was
    (True, 0.5, True, True),
    (True, 0.9, True, False),    # reaches high: found (DaSiamRPN: at high)
    (True, 0.9, False, True),    # pysot's long-term mode: only above high
    (True, 0.95, False, False),
])
def test_still_lost_is_the_one_hysteresis(lost: bool, score: float, found_at_high: bool,
                                          expected: bool) -> None:
    assert still_lost(lost, score, 0.3, 0.9, found_at_high) is expected


@pytest.mark.parametrize(("name", "overrides"), [
    ("dasiamrpn", {"long_term": True, "lost_threshold": 0.97, "found_threshold": 0.99}),
    ("siamrpnpp", {"long_term": True, "confidence_low": 0.95, "confidence_high": 0.99}),
])
def test_wide_search_modes_lose_and_find_on_a_real_sequence(name: str, overrides: dict,
                                                             crossing: Sequence) -> None:
    """With thresholds near 1 the packaged models' own lost flag follows :func:`still_lost` frame
    by frame (scores read off the results) and goes both ways on otb_Crossing."""
    tracker = build_tracker(name, device="cpu", **overrides)
    low, high = (overrides["lost_threshold"], overrides["found_threshold"]) if name == "dasiamrpn" else \
        (overrides["confidence_low"], overrides["confidence_high"])
    tracker.init(crossing.frame(0), crossing.boxes[0])
    lost, flags = False, []
    for index in range(1, 40):
        result = tracker.track(crossing.frame(index))
        lost = still_lost(lost, result.extra["raw_score"], low, high, found_at_high=name == "dasiamrpn")
        assert result.extra["lost"] is lost, f"frame {index}"
        flags.append(lost)
    assert any(flags) and not all(flags) and flags.index(True) < len(flags) - 1 - flags[::-1].index(False)
