"""SINT: candidate sampling, RoI pooling against naive loops, optical-flow filter, regressor, tracker."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from siam_tracking_ros.models.heads.roi_embedding import RidgeBoxRegressor, roi_align, roi_max_pool
from siam_tracking_ros.trackers.registry import build_tracker
from siam_tracking_ros.trackers.sint import flow_coverage, flow_filter, radial_candidates


def test_candidate_count_and_scales() -> None:
    boxes = radial_candidates((100.0, 80.0), (40.0, 20.0), 30.0, 10, 10, (math.sqrt(0.5), 1.0, math.sqrt(2)))
    assert boxes.shape == (3 * (1 + 10 * 10), 4)
    sizes = np.unique(np.round(boxes[:, 2:], 6), axis=0)
    expected = np.array([[40, 20]]) * np.array([[math.sqrt(0.5)], [1.0], [math.sqrt(2)]])
    np.testing.assert_allclose(sizes, np.round(expected, 6))


def test_radial_sampling_geometry() -> None:
    center = np.array([50.0, 60.0])
    boxes = radial_candidates(center, (10.0, 10.0), 40.0, 4, 8, (1.0,))
    offsets = boxes[:, :2] - center
    radii = np.hypot(offsets[:, 0], offsets[:, 1])
    np.testing.assert_allclose(radii[0], 0.0)
    np.testing.assert_allclose(np.unique(np.round(radii[1:], 6)), [10.0, 20.0, 30.0, 40.0])
    assert radii.max() <= 40.0 + 1e-9
    ring = offsets[1 + 8 * 3:]  # the outer ring, 8 angles 45 degrees apart
    angles = np.sort(np.mod(np.degrees(np.arctan2(ring[:, 1], ring[:, 0])), 360.0))
    np.testing.assert_allclose(angles, np.arange(0, 360, 45), atol=1e-6)


def _bilinear(feature: np.ndarray, x: float, y: float) -> np.ndarray:
    """Zero-padded bilinear sample at continuous (x, y), pixel k centred at k + 0.5."""
    u, v = x - 0.5, y - 0.5
    x0, y0 = math.floor(u), math.floor(v)
    out = np.zeros(feature.shape[0])
    for yy, wy in ((y0, 1 - (v - y0)), (y0 + 1, v - y0)):
        for xx, wx in ((x0, 1 - (u - x0)), (x0 + 1, u - x0)):
            if 0 <= yy < feature.shape[1] and 0 <= xx < feature.shape[2]:
                out += wy * wx * feature[:, yy, xx]
    return out


def _naive_roi_align(feature: np.ndarray, box: np.ndarray, size: int, scale: float, ratio: int,
                     reduce: str) -> np.ndarray:
    x1, y1, x2, y2 = box * scale
    out = np.zeros((feature.shape[0], size, size))
    for i in range(size):
        for j in range(size):
            samples = []
            for a in range(ratio):
                for b in range(ratio):
                    y = y1 + (i * ratio + a + 0.5) / (size * ratio) * (y2 - y1)
                    x = x1 + (j * ratio + b + 0.5) / (size * ratio) * (x2 - x1)
                    samples.append(_bilinear(feature, x, y))
            stack = np.stack(samples)
            out[:, i, j] = stack.max(axis=0) if reduce == "max" else stack.mean(axis=0)
    return out


@pytest.mark.parametrize("mode", ["avg", "max"])
def test_roi_align_matches_a_naive_loop(mode: str) -> None:
    rng = np.random.default_rng(0)
    feature = rng.normal(size=(3, 9, 11))
    boxes = np.array([[0.0, 0.0, 88.0, 72.0], [10.5, 3.2, 40.7, 50.1], [-8.0, 20.0, 30.0, 90.0]])
    out = roi_align(torch.from_numpy(feature)[None], torch.from_numpy(boxes), 3, 1 / 8, 2, mode)
    for k, box in enumerate(boxes):
        np.testing.assert_allclose(out[k].numpy(), _naive_roi_align(feature, box, 3, 1 / 8, 2, mode),
                                   atol=1e-6)


def test_roi_max_pool_matches_a_naive_loop() -> None:
    rng = np.random.default_rng(1)
    feature = rng.normal(size=(2, 10, 12))
    boxes = np.array([[0.0, 0.0, 95.0, 79.0], [17.0, 9.0, 60.0, 41.0], [40.0, 40.0, 44.0, 44.0]])
    out = roi_max_pool(torch.from_numpy(feature)[None], torch.from_numpy(boxes), 3, 1 / 8)
    for k, box in enumerate(boxes):
        x1, y1, x2, y2 = (int(np.rint(v / 8)) for v in box)
        x2, y2 = min(x2, feature.shape[2] - 1), min(y2, feature.shape[1] - 1)  # clipped to the map
        rh, rw = y2 - y1 + 1, x2 - x1 + 1
        for i in range(3):
            for j in range(3):
                ys = range(y1 + (i * rh) // 3, y1 + math.ceil((i + 1) * rh / 3))
                xs = range(x1 + (j * rw) // 3, x1 + math.ceil((j + 1) * rw / 3))
                expected = np.max([[feature[:, y, x] for x in xs] for y in ys], axis=(0, 1))
                np.testing.assert_allclose(out[k, :, i, j].numpy(), expected)


def _textured(seed: int, shape: tuple[int, int] = (200, 240)) -> np.ndarray:
    noise = np.random.default_rng(seed).uniform(0, 255, size=shape).astype(np.float32)
    blurred = cv2.GaussianBlur(noise, (0, 0), 3.0)
    return cv2.normalize(blurred, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def test_flow_filter_keeps_candidates_covering_the_moved_box() -> None:
    prev = _textured(3)
    shift = np.float32([[1, 0, 15], [0, 1, 10]])
    current = cv2.warpAffine(prev, shift, (prev.shape[1], prev.shape[0]), borderMode=cv2.BORDER_REFLECT)
    prev_box = (90.0, 80.0, 40.0, 40.0)  # cxcywh; moves to (105, 90)
    candidates = np.array([
        [105.0, 90.0, 40.0, 40.0],    # the moved box: covers all points
        [115.0, 90.0, 40.0, 40.0],    # 10 px off: covers 80%
        [135.0, 120.0, 40.0, 40.0],   # 30 px off in x and y: covers 9%
        [200.0, 40.0, 40.0, 40.0],    # elsewhere: nothing
    ])
    coverage = flow_coverage(prev, current, prev_box, candidates)
    assert coverage is not None
    np.testing.assert_allclose(coverage, [1.0, 0.8, 0.09, 0.0], atol=0.05)
    keep = flow_filter(prev, current, prev_box, candidates, min_coverage=0.25)
    assert keep.tolist() == [True, True, False, False]
    # without motion the box stays where it was: the original position is kept instead
    still = flow_filter(prev, prev, prev_box, candidates[[0, 2, 3]] - [[15, 10, 0, 0]], min_coverage=0.25)
    assert still.tolist() == [True, False, False]


def test_ridge_regressor_recovers_a_linear_correction() -> None:
    rng = np.random.default_rng(4)
    target = torch.tensor([50.0, 40.0, 20.0, 10.0], dtype=torch.float64)
    proposals = torch.from_numpy(np.column_stack([50 + rng.uniform(-3, 3, 40), 40 + rng.uniform(-2, 2, 40),
                                                  20 * np.exp(rng.uniform(-.2, .2, 40)),
                                                  10 * np.exp(rng.uniform(-.2, .2, 40))]))
    deltas = RidgeBoxRegressor.targets(proposals, target)
    features = torch.cat([deltas, torch.from_numpy(rng.normal(size=(40, 3)))], dim=1) * 5
    regressor = RidgeBoxRegressor(ridge_lambda=1e-6)
    before = regressor.predict(features, proposals)
    torch.testing.assert_close(before, proposals)
    regressor.fit(features, proposals, target)
    after = regressor.predict(features, proposals)
    torch.testing.assert_close(after, target.expand(40, 4), atol=1e-3, rtol=1e-4)


@pytest.mark.shared_data
def test_sint_mechanics_self_match_outscores_a_blank_frame(crossing) -> None:
    """Mechanics with random weights (no tracking-quality claim): the candidate set is the radial
    sampling, the init frame matches its own template at the init box, and a blank frame scores lower."""
    torch.manual_seed(1)
    frame = crossing.frame(0)
    box = tuple(crossing.boxes[0])
    tracker = build_tracker("sint", weights="random", device="cpu", use_regression=False)
    tracker.init(frame, box)
    candidates = tracker.candidates(frame.shape)
    expected = radial_candidates(tracker.center, tracker.size, 0.3 * frame.shape[1], 10, 10,
                                 (math.sqrt(0.5), 1.0, math.sqrt(2)))
    np.testing.assert_allclose(candidates, expected)
    assert candidates.shape == (303, 4)
    same = tracker.track(frame)
    blank = np.full_like(frame, 127)
    tracker.init(frame, box)
    gone = tracker.track(blank)
    assert same.score > 0.99
    np.testing.assert_allclose(same.box, box, atol=1.0)
    assert gone.score < same.score - 0.05
