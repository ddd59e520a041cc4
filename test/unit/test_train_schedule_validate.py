"""Learning-rate schedule (warm-up, log-linear decay, by time) and validation (tracking + AUC)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from siam_tracking_ros.core.result import TrackResult
from siam_tracking_ros.data.sequences import Sequence
from siam_tracking_ros.train.config import ScheduleConfig, config_from_dict
from siam_tracking_ros.train.schedule import learning_rate
from siam_tracking_ros.train.validate import success_auc, track_sequence, validate_weights

# --- schedule ---------------------------------------------------------------------------------


def test_warm_up_is_linear_from_warmup_lr_to_lr() -> None:
    schedule = ScheduleConfig(lr=0.01, end_lr=0.001, warmup_epochs=2, warmup_lr=0.002)
    rates = [learning_rate(step, 100, 10, schedule) for step in range(21)]
    assert rates[0] == pytest.approx(0.002)
    assert rates[10] == pytest.approx(0.006)  # half-way through the 20 warm-up steps
    np.testing.assert_allclose(np.diff(rates[:20]), 0.008 / 20)  # equal steps
    assert rates[20] == pytest.approx(0.01)  # warm-up over: the full rate


def test_decay_is_log_linear_to_end_lr() -> None:
    schedule = ScheduleConfig(lr=0.01, end_lr=0.001, warmup_epochs=2, warmup_lr=0.002)
    assert learning_rate(60, 100, 10, schedule) == pytest.approx(math.sqrt(0.01 * 0.001))  # half-way
    assert learning_rate(100, 100, 10, schedule) == pytest.approx(0.001)
    assert learning_rate(500, 100, 10, schedule) == pytest.approx(0.001)  # not below end_lr
    rates = [learning_rate(step, 100, 10, schedule) for step in range(20, 101)]
    np.testing.assert_allclose(np.diff(np.log(rates)), math.log(0.1) / 80)  # a constant factor per step


def test_no_warm_up_starts_at_lr() -> None:
    schedule = ScheduleConfig(lr=0.02, end_lr=0.002, warmup_epochs=0, warmup_lr=0.001)
    assert learning_rate(0, 50, 10, schedule) == pytest.approx(0.02)


def test_decay_by_time_follows_the_budget_not_the_step() -> None:
    schedule = ScheduleConfig(lr=0.01, end_lr=0.001, warmup_epochs=0, time_budget_minutes=10,
                              decay_by_time=True)
    half = math.sqrt(0.01 * 0.001)
    assert learning_rate(3, 1000, 10, schedule, elapsed_s=300.0) == pytest.approx(half)
    assert learning_rate(900, 1000, 10, schedule, elapsed_s=300.0) == pytest.approx(half)
    assert learning_rate(900, 1000, 10, schedule, elapsed_s=0.0) == pytest.approx(0.01)
    assert learning_rate(900, 1000, 10, schedule, elapsed_s=3600.0) == pytest.approx(0.001)
    schedule.decay_by_time = False  # then the budget alone changes nothing
    assert learning_rate(500, 1000, 10, schedule, elapsed_s=300.0) == pytest.approx(half)


def test_trainer_applies_warm_up_and_backbone_rates(sequences_dir: Path, tmp_path: Path) -> None:
    from siam_tracking_ros.train.trainer import Trainer

    data = {
        "variant": "nanotrack", "variant_options": {"version": "v1"}, "output_dir": str(tmp_path / "run"),
        "device": "cpu", "threads": 1, "progress": False, "log_every": 1,
        "datasets": [{"type": "sequences", "root": str(sequences_dir), "names": ["otb_Dudek_first20"],
                      "frame_gap": 10}],
        "schedule": {"epochs": 2, "samples_per_epoch": 4, "batch_size": 2, "warmup_epochs": 1,
                     "warmup_lr": 0.001, "lr": 0.005, "end_lr": 0.0005, "backbone_lr_mult": 0.1,
                     "freeze_backbone_epochs": 1},
    }
    trainer = Trainer(config_from_dict(data))
    trainer.run()
    rows = (tmp_path / "run" / "train_log.csv").read_text().splitlines()
    header = rows[0].split(",")
    logged = [float(row.split(",")[header.index("lr")]) for row in rows[1:]]
    # 2 steps per epoch: warm-up steps 0, 1 (0.001, 0.003), then decay over steps 2, 3
    expected = [learning_rate(step, 4, 2, trainer.config.schedule) for step in range(4)]
    assert logged == pytest.approx(expected, abs=1e-6)  # the log keeps 6 decimals
    assert logged[:2] == pytest.approx([0.001, 0.003])
    assert logged[2] == pytest.approx(0.005)
    groups = {bool(g.get("backbone")): g for g in trainer.optimizer.param_groups}
    assert groups[False]["lr"] == pytest.approx(expected[3])  # the last step set these
    assert groups[True]["lr"] == pytest.approx(0.1 * expected[3])  # unfrozen in epoch 2, at 0.1 x
    trainer.epoch = 0
    trainer._set_lr()
    assert {bool(g.get("backbone")): g["lr"] for g in trainer.optimizer.param_groups}[True] == 0.0

# --- validation -------------------------------------------------------------------------------


class ReplayTracker:
    """Plays back given boxes and records what it was asked (a deterministic stand-in tracker)."""

    def __init__(self, boxes: np.ndarray) -> None:
        self.boxes, self.index, self.inits, self.resets = boxes, 0, [], 0

    def init(self, frame: np.ndarray, box) -> None:
        self.inits.append(tuple(float(v) for v in box))
        self.index = 0

    def track(self, frame: np.ndarray) -> TrackResult:
        self.index += 1
        return TrackResult(tuple(self.boxes[self.index]), 1.0)

    def reset(self) -> None:
        self.resets += 1


def test_success_auc_by_hand() -> None:
    truth = np.array([[0, 0, 10, 10]] * 4, dtype=float)
    assert success_auc(truth, truth) == pytest.approx(20 / 21)  # IoU 1 is not above the threshold 1
    half = truth + np.array([5.0, 0, 0, 0])  # IoU 50/150 = 1/3: above 0, .., 0.3 (7 of 21)
    assert success_auc(half, truth) == pytest.approx(7 / 21)
    mixed = np.stack([truth[0], half[0], [np.nan] * 4, truth[0]])  # an empty prediction counts as IoU 0
    assert success_auc(mixed, truth) == pytest.approx((20 + 7 + 0 + 20) / 21 / 4)
    truth_with_gap = truth.copy()
    truth_with_gap[1] = np.nan  # a frame without ground truth is left out
    assert success_auc(half, truth_with_gap) == pytest.approx(7 / 21)


def test_track_sequence_starts_at_the_first_annotated_frame(crossing: Sequence) -> None:
    boxes = crossing.boxes[:8].copy()
    boxes[:2] = np.nan  # the target appears in frame 2
    sequence = Sequence("late", crossing.frames[:8], boxes)
    tracker = ReplayTracker(crossing.boxes[2:] + 1.0)
    out = track_sequence(tracker, sequence, max_frames=6)
    assert out.shape == (6, 4) and np.isnan(out[:2]).all()
    assert tracker.inits == [tuple(float(v) for v in boxes[2])]
    np.testing.assert_array_equal(out[2], boxes[2])  # the init box itself
    np.testing.assert_array_equal(out[3:], crossing.boxes[3:6] + 1.0)


def test_validate_weights_scores_each_sequence_with_the_real_tracker(crossing: Sequence,
                                                                     nanotrack_dir: Path) -> None:
    weights = nanotrack_dir / "pretrained" / "nanotrackv1.pth"
    first = Sequence("walk", crossing.frames[:24], crossing.boxes[:24])
    later = Sequence("walk_later", crossing.frames[40:64], crossing.boxes[40:64])
    scores = validate_weights("nanotrack", weights, [first, later], "cpu", max_frames=20)
    assert set(scores) == {"walk", "walk_later", "mean"}
    assert scores["mean"] == pytest.approx((scores["walk"] + scores["walk_later"]) / 2)
    from siam_tracking_ros.trackers.registry import build_tracker

    for sequence in (first, later):  # the same numbers from a tracker of our own
        tracker = build_tracker("nanotrack", weights=str(weights), device="cpu")
        boxes = track_sequence(tracker, sequence, 20)
        assert scores[sequence.name] == pytest.approx(success_auc(boxes, sequence.boxes[:20]))
        frozen = np.repeat(sequence.boxes[:1], 20, axis=0)  # the walker moves: a box left in place
        assert scores[sequence.name] > success_auc(frozen, sequence.boxes[:20]) + 0.2, scores
