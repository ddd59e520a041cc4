"""SiamBM geometry: search candidates, aspect-ratio masks, rotated crops and polygons."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from siam_tracking_ros.core.geometry import crop_subwindow
from siam_tracking_ros.trackers.siam_bm import (
    aspect_ratio_mask,
    rotated_box_polygon,
    rotated_crops,
    search_candidates,
    symmetric_geometric_steps,
    symmetric_linear_steps,
)


@pytest.mark.parametrize(("m", "n"), [(3, 3), (5, 3), (3, 5), (1, 3)])
def test_candidates_change_one_property(m: int, n: int) -> None:
    pairs = search_candidates(symmetric_geometric_steps(m, 1.05), symmetric_linear_steps(n, math.pi / 8))
    assert len(pairs) == m + n - 1
    assert len(set(pairs)) == len(pairs)
    for scale, angle in pairs:
        changed = (not math.isclose(scale, 1.0)) + (not math.isclose(angle, 0.0, abs_tol=1e-12))
        assert changed <= 1
    assert sum(1 for s, a in pairs if a == 0.0) == m
    assert sum(1 for s, a in pairs if s == 1.0) == n


def test_candidates_need_the_current_state() -> None:
    with pytest.raises(ValueError, match="include 1"):
        search_candidates([0.9, 1.1], [0.0])
    with pytest.raises(ValueError, match="include 0"):
        search_candidates([1.0], [-0.1, 0.1])


def test_mask_all_ones_up_to_threshold() -> None:
    for w, h in [(40.0, 40.0), (60.0, 40.0), (40.0, 60.0), (30.0, 44.9)]:
        assert bool((aspect_ratio_mask(6, w, h, region_side=100.0) == 1).all())


def test_mask_zeroes_outside_elongated_target() -> None:
    wide = aspect_ratio_mask(6, 80.0, 20.0, region_side=120.0)   # h covers 1/6 of the map
    assert wide.shape == (6, 6)
    rows = wide[:, 0]
    assert rows.tolist() == [0, 0, 1, 1, 0, 0]
    assert bool((wide == rows[:, None]).all())                    # whole rows
    tall = aspect_ratio_mask(22, 20.0, 80.0, region_side=120.0)
    cols = tall[0]
    kept = torch.nonzero(cols).flatten()
    assert 1 <= len(kept) < 22 and bool((tall == cols[None, :]).all())
    assert int(kept[0]) == 22 - 1 - int(kept[-1])                  # centred


def test_rotated_crop_then_back_matches_axis_aligned() -> None:
    ys, xs = np.mgrid[0:120, 0:160].astype(np.float32)
    image = np.stack([100 + 60 * np.sin(xs / 9.0) * np.cos(ys / 7.0), xs, ys + 20], axis=-1)
    center = (80.0, 60.0)                                          # continuous coordinates
    center_idx = (center[0] - 0.5, center[1] - 0.5)                # pixel-index coordinates
    degrees = 25.0
    matrix = cv2.getRotationMatrix2D(center_idx, degrees, 1.0)
    rotated = cv2.warpAffine(image, matrix, (160, 120), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT)

    def to_tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None].float()

    pad = torch.zeros(3)
    sides = torch.tensor([50.0])
    back = rotated_crops(to_tensor(rotated), center, sides, torch.tensor([-math.radians(degrees)]), 25, pad)
    straight = rotated_crops(to_tensor(image), center, sides, torch.tensor([0.0]), 25, pad)
    assert float((back - straight).abs().mean()) < 0.5
    wrong = rotated_crops(to_tensor(rotated), center, sides, torch.tensor([math.radians(degrees)]), 25, pad)
    assert float((wrong - straight).abs().mean()) > 5.0
    # angle 0 samples like the shared axis-aligned crop
    reference = crop_subwindow(to_tensor(image), center, 50.0, 25, pad)
    torch.testing.assert_close(straight, reference, rtol=0, atol=1e-3)


def test_polygon_of_rotated_box() -> None:
    square = rotated_box_polygon(10.0, 20.0, 4.0, 2.0, 0.0)
    np.testing.assert_allclose(square, [[8, 19], [12, 19], [12, 21], [8, 21]])
    turned = rotated_box_polygon(10.0, 20.0, 4.0, 2.0, math.pi / 2)
    np.testing.assert_allclose(turned.min(axis=0), [9, 18], atol=1e-5)
    np.testing.assert_allclose(turned.max(axis=0), [11, 22], atol=1e-5)
