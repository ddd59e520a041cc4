"""Metric formulas: checked against the got10k toolkit on the same boxes and a hand-worked example."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from siam_tracking_ros.eval.metrics import (
    IOU_THRESHOLDS,
    PIXEL_THRESHOLDS,
    SupervisedRun,
    box_iou,
    center_error,
    eao,
    eao_fragments,
    expected_overlap_curve,
    longterm_curves,
    longterm_summary,
    ope_scores,
    precision_curve,
    success_curve,
    vot_accuracy,
)


@pytest.fixture(scope="module")
def got10k() -> SimpleNamespace:
    """The got10k toolkit's metrics and OTB experiment, for the comparisons only: without it the
    hand-worked cases below still run."""
    return SimpleNamespace(metrics=pytest.importorskip("got10k.utils.metrics"),
                           otb=pytest.importorskip("got10k.experiments.otb"))


def _random_pairs(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth and perturbed predictions: overlapping, disjoint and nested boxes."""
    rng = np.random.default_rng(seed)
    gt = np.column_stack([rng.uniform(0, 300, n), rng.uniform(0, 200, n),
                          rng.uniform(5, 120, n), rng.uniform(5, 120, n)])
    pred = gt + rng.normal(0, 1, (n, 4)) * np.array([25, 25, 15, 15])
    pred[:, 2:] = np.abs(pred[:, 2:]) + 1.0
    pred[::17] += np.array([500.0, 0, 0, 0])  # some far-away misses
    return pred, gt


def test_iou_and_center_error_match_got10k(got10k: SimpleNamespace) -> None:
    pred, gt = _random_pairs()
    np.testing.assert_allclose(box_iou(pred, gt), got10k.metrics.rect_iou(pred.copy(), gt.copy()),
                               atol=1e-9)
    np.testing.assert_allclose(center_error(pred, gt), got10k.metrics.center_error(pred, gt), atol=1e-9)


def test_otb_curves_match_got10k(got10k: SimpleNamespace) -> None:
    pred, gt = _random_pairs(seed=3)
    ious = got10k.metrics.rect_iou(pred.copy(), gt.copy())
    errors = got10k.metrics.center_error(pred, gt)
    experiment = SimpleNamespace(nbins_iou=21, nbins_ce=51)
    succ_ref, prec_ref = got10k.otb.ExperimentOTB._calc_curves(experiment, ious, errors)
    np.testing.assert_allclose(success_curve(box_iou(pred, gt)), succ_ref)
    np.testing.assert_allclose(precision_curve(center_error(pred, gt)), prec_ref)
    scores = ope_scores(pred, gt)
    assert scores.auc == pytest.approx(float(np.mean(succ_ref)))
    assert scores.precision == pytest.approx(float(prec_ref[20]))


def test_hand_worked_example() -> None:
    gt = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [np.nan] * 4, [10, 10, 20, 40]],
                  dtype=float)
    pred = np.array([[0, 0, 10, 10],      # identical: IoU 1, error 0
                     [5, 0, 10, 10],      # half shifted: inter 50, union 150 -> 1/3, error 5
                     [30, 30, 10, 10],    # disjoint: IoU 0, error sqrt(30^2+30^2)
                     [0, 0, 10, 10],      # no ground truth: skipped
                     [10, 10, 20, 20]],   # inside: 400/800 = 0.5, centre (20,20) vs (20,30): 10
                    dtype=float)
    np.testing.assert_allclose(box_iou(pred, gt)[[0, 1, 2, 4]], [1.0, 1 / 3, 0.0, 0.5])
    s = ope_scores(pred, gt)
    assert s.frames == 4
    assert s.mean_iou == pytest.approx((1 + 1 / 3 + 0 + 0.5) / 4)
    # thresholds 0, .05, ..., 1 (strictly above): IoU 1 passes 20 of 21 (not t=1), 1/3 passes
    # t=0..0.3 (7), 0.5 passes t=0..0.45 (10), 0 passes none.
    assert s.auc == pytest.approx((20 + 7 + 10 + 0) / (4 * 21))
    assert s.precision == pytest.approx(3 / 4)  # errors 0, 5, 42.4, 10
    # normalised errors: 0, 0.5, 4.24, hypot(0, 10/40)=0.25 -> only the first within 0.2
    assert s.norm_precision == pytest.approx(1 / 4)


def test_empty_prediction_and_all_absent_ground_truth() -> None:
    gt = np.array([[0, 0, 10, 10]], dtype=float)
    assert box_iou(np.array([[np.nan] * 4]), gt)[0] == 0.0
    assert np.isinf(center_error(np.array([[np.nan] * 4]), gt)[0])
    s = ope_scores(np.zeros((2, 4)), np.full((2, 4), np.nan))
    assert s.frames == 0 and np.isnan(s.auc)
    assert len(success_curve(np.array([0.5]))) == len(IOU_THRESHOLDS)
    assert len(precision_curve(np.array([3.0]))) == len(PIXEL_THRESHOLDS)


def test_vot_accuracy_leaves_out_burn_in() -> None:
    overlaps = np.array([1.0, 0.2, 0.2, 0.8, 0.0, np.nan, np.nan, 1.0, 0.6, 0.6])
    run = SupervisedRun(overlaps, inits=[0, 7], failures=[4])
    assert vot_accuracy(run, burn_in=2) == pytest.approx((0.2 + 0.8 + 0.0 + 0.6) / 4)
    assert vot_accuracy(run, burn_in=0) == pytest.approx(np.nanmean(overlaps))


def test_eao_hand_worked() -> None:
    # fragment A fails at its 3rd frame (padded with zeros); B reaches the end after 4 frames.
    run = SupervisedRun(np.array([1.0, 0.6, 0.0, np.nan, 1.0, 0.8, 0.4, 0.2]), inits=[0, 4], failures=[2])
    fragments = eao_fragments([run])
    assert [f.tolist() for f, _ in fragments] == [[1.0, 0.6, 0.0], [1.0, 0.8, 0.4, 0.2]]
    curve = expected_overlap_curve(fragments, 6)
    # length 2: A mean(0.6), B mean(0.8) -> 0.7; length 4: A (0.6+0+0)/3, B (0.8+.4+.2)/3
    assert curve[2] == pytest.approx(0.7)
    assert curve[4] == pytest.approx((0.2 + 1.4 / 3) / 2)
    # length 5: only A (B ended without failure after 4 frames) -> 0.6 / 4
    assert curve[5] == pytest.approx(0.15)
    assert eao([run], (2, 2)) == pytest.approx(0.7)
    assert eao([run], (5, 6)) == pytest.approx((0.15 + 0.12) / 2)


def test_longterm_precision_recall() -> None:
    gt = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [np.nan] * 4, [0, 0, 10, 10]], dtype=float)
    pred = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], dtype=float)
    scores = np.array([0.9, 0.5, 0.7, 0.1])
    curves = longterm_curves(pred, scores, gt, thresholds=np.array([0.0, 0.6]))
    # tau 0: all report; overlaps 1, 1/3, 0 (absent), 1 -> Pr = 7/3/4, Re = 7/3/3
    assert curves["precision"][0] == pytest.approx(7 / 12)
    assert curves["recall"][0] == pytest.approx(7 / 9)
    # tau 0.6: frames 0 and 2 report -> Pr = (1 + 0)/2, Re = 1/3
    assert curves["precision"][1] == pytest.approx(0.5)
    assert curves["recall"][1] == pytest.approx(1 / 3)
    best = longterm_summary(curves)
    assert best["threshold"] == 0.0
    assert best["f_score"] == pytest.approx(2 * (7 / 12) * (7 / 9) / (7 / 12 + 7 / 9))
