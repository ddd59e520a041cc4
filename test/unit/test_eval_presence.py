"""Presence calibration and metrics (eval/presence.py) on synthetic scores and real sequences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from siam_tracking_ros.core.presence import LostPolicy, TargetState
from siam_tracking_ros.data.sequences import find_sequences
from siam_tracking_ros.eval import presence


def test_platt_fit_recovers_the_generating_parameters() -> None:
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.01, 0.99, 20000)
    a, b = 2.5, -1.0
    logit = np.log(raw / (1 - raw))
    present = rng.random(raw.size) < 1 / (1 + np.exp(-(a * logit + b)))
    fa, fb = presence.fit_platt(raw, present)
    assert abs(fa - a) < 0.15 and abs(fb - b) < 0.15


def test_platt_fit_stays_finite_on_separable_scores() -> None:
    raw = np.r_[np.full(50, 0.9), np.full(50, 0.1)]
    present = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    a, b = presence.fit_platt(raw, present)
    assert np.isfinite([a, b]).all() and a > 0


def test_platt_fit_reaches_the_minimum_on_saturated_scores() -> None:
    """Peak logits piled up at the ends (a trained head), a third of the absent frames confident:
    the fit must be the loss minimum with a positive slope. Plain damped Newton steps oscillated
    from (1, 0) to a = -0.33 here; on real validation samples the same
    shipped an inverted score (a = -0.48)."""
    rng = np.random.default_rng(0)
    x_present = np.r_[rng.uniform(5, 9.6, 860), rng.uniform(-4, 5, 60)]
    x_absent = np.r_[rng.uniform(-8.6, -1, 300), rng.uniform(3, 9.6, 250)]
    x = np.r_[x_present, x_absent]
    present = np.r_[np.ones(x_present.size, bool), np.zeros(x_absent.size, bool)]
    a, b = presence.fit_platt(1 / (1 + np.exp(-x)), present)
    positives, negatives = x_present.size, x_absent.size
    target = np.where(present, (positives + 1) / (positives + 2), 1 / (negatives + 2))

    def loss(a: float, b: float) -> float:
        z = a * x + b
        return float(np.sum(target * np.logaddexp(0, -z) + (1 - target) * np.logaddexp(0, z)))

    grid = min(loss(ga, gb) for ga in np.linspace(-1, 2, 61) for gb in np.linspace(-4, 4, 81))
    assert a > 0
    assert loss(a, b) <= grid + 1e-6


def test_platt_fit_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="present and absent"):
        presence.fit_platt(np.full(5, 0.5), np.ones(5, bool))


def test_roc_auc_matches_pair_counting() -> None:
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 5, 300).astype(float)  # many ties
    positive = rng.random(300) < 0.4
    pos, neg = scores[positive], scores[~positive]
    brute = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) \
        / (pos.size * neg.size)
    assert presence.roc_auc(scores, positive) == pytest.approx(brute)
    assert presence.roc_auc(np.r_[0.9, 0.8, 0.1], np.r_[True, True, False]) == 1.0


def test_reliability_bins_count_every_score() -> None:
    scores = np.array([0.05, 0.15, 0.15, 0.95, 1.0])
    mean, observed, counts = presence.reliability_bins(scores, np.array([0, 1, 0, 1, 1], bool))
    assert counts.sum() == 5 and counts[1] == 2 and counts[9] == 2
    assert observed[1] == 0.5 and observed[9] == 1.0 and mean[0] == pytest.approx(0.05)


def test_settle_frames_are_left_out_of_each_absent_run() -> None:
    flags = np.array([0, 1, 1, 1, 0, 1, 1], bool)
    kept = presence._after_transitions(flags, 2)
    assert kept.tolist() == [False, False, False, True, False, False, False]


@pytest.fixture(scope="module")
def two_sequences(sequences_dir: Path) -> list:
    return find_sequences(sequences_dir, ["otb_Crossing", "vot_bag"])


def test_segments_mark_where_the_target_is_absent(two_sequences: list) -> None:
    first, second = two_sequences
    spliced = presence.spliced_segment(first, second, 10)
    assert spliced.absent_from == 10 and len(spliced.frames) == 20
    assert all(t is not None for _, t in spliced.frames[:10])
    assert all(t is None for _, t in spliced.frames[10:])
    back = presence.return_segment(first, second, 10)
    truths = [t is not None for _, t in back.frames]
    assert truths == [True] * 10 + [False] * 10 + [True] * 10
    blank = presence.blank_segment(first, 8)
    assert all(not np.any(f) for f, _ in blank.frames[blank.absent_from:])


def test_backgrounds_replace_the_next_sequence(sequences_dir: Path, two_sequences: list) -> None:
    first, second = two_sequences
    backgrounds = find_sequences(sequences_dir, ["otb_Couple", "tinytlp_Bike", "otb_Car1"])
    plain = presence.presence_segments(two_sequences, 10, 30)
    a, b = first.name, second.name
    assert [s.name for s in plain] == [a, b, f"{a}+{b}", f"{a}+{b}+{a}", f"{a}+blank0",
                                       f"{b}+{a}", f"{b}+{a}+{b}", f"{b}+blank0"]
    hard = presence.presence_segments(two_sequences, 10, 30, backgrounds)
    returns = [s.name for s in hard if s.name.count("+") == 2]
    assert returns == [f"{seq.name}+{bg.name}+{seq.name}" for seq in two_sequences for bg in backgrounds]
    assert len(hard) == 2 + 2 * 3 + 2  # own, one return per background, blank


class _ReplayTracker:
    """Returns the ground truth while the target is visible (score 0.9), a wrong box otherwise
    (score 0.1): what a perfect presence-aware tracker would report."""

    def __init__(self, segment: presence.Segment) -> None:
        self.truths = [t for _, t in segment.frames]
        self.index = 0
        self.scales: list[float] = []

    def init(self, frame, box) -> None:
        self.index = 0

    def track(self, frame):
        from siam_tracking_ros.core.result import TrackResult

        truth = self.truths[self.index]
        self.index += 1
        if truth is None:
            return TrackResult((0.0, 0.0, 5.0, 5.0), 0.1)
        return TrackResult(tuple(float(v) for v in truth), 0.9)

    def reset(self) -> None:
        pass

    def set_search_scale(self, scale: float) -> None:
        self.scales.append(scale)


def test_state_machine_run_goes_lost_and_back(two_sequences: list) -> None:
    segment = presence.return_segment(*two_sequences, 12)
    tracker = _ReplayTracker(segment)
    policy = LostPolicy(0.5, lost_frames=3, found_frames=2, lost_search_scale=2.0)
    run = presence.run_with_states(tracker, segment, policy)
    assert run.states[11] == TargetState.TRACKING
    assert run.states[12 + 2] == TargetState.LOST and run.states[23] == TargetState.LOST
    assert presence.reacquire_frames(run) == 1.0  # found_frames=2: TRACKING on the 2nd frame back
    assert tracker.scales == [2.0, 1.0, 1.0]  # wide while LOST, normal when found and at the end
    summary = presence.presence_summary([run], policy)
    assert summary["absent_lost"] == 1.0 and summary["roc_auc"] == 1.0
    assert summary["present_tracking"] == pytest.approx(23 / 24)
