"""core.geometry.mask_to_polygon: rotated rectangles come back as their corners."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from siam_tracking_ros.core.geometry import mask_to_polygon

#: rotated rectangles with integer corners: side directions (a, b) and (-b, a), side lengths in
#: multiples of |(a, b)|; angles 0, 53.1, 22.6, 61.9, 28.1 and -36.9 degrees
RECTANGLES = [((1, 0), 60, 30), ((3, 4), 12, 6), ((12, 5), 5, 3), ((8, 15), 4, 2), ((15, 8), 4, 2),
              ((4, -3), 14, 8)]


def _rotated_rectangle_mask(direction: tuple[int, int], long_side: int, short_side: int,
                            shape: tuple[int, int] = (260, 260)) -> tuple[np.ndarray, np.ndarray]:
    """A filled rotated rectangle drawn with cv2 (exact integer corners) and those corners."""
    u = np.array(direction) * long_side
    v = np.array([-direction[1], direction[0]]) * short_side
    origin = np.array([100, 60])
    corners = np.array([origin, origin + u, origin + u + v, origin + v], dtype=np.int32)
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(mask, [corners], 255)
    return mask, corners.astype(np.float32)


def _max_corner_distance(found: np.ndarray, expected: np.ndarray) -> float:
    distances = np.linalg.norm(found[:, None, :] - expected[None, :, :], axis=2)
    return float(max(distances.min(axis=0).max(), distances.min(axis=1).max()))


@pytest.mark.parametrize(("direction", "long_side", "short_side"), RECTANGLES)
def test_rotated_rectangle_gives_back_its_corners(direction: tuple[int, int], long_side: int,
                                                  short_side: int) -> None:
    mask, corners = _rotated_rectangle_mask(direction, long_side, short_side)
    polygon = mask_to_polygon(mask)
    assert polygon is not None and polygon.shape == (4, 2)
    assert _max_corner_distance(polygon, corners) <= 1.0


def test_float_probability_mask_uses_the_threshold() -> None:
    mask, corners = _rotated_rectangle_mask(*RECTANGLES[1])
    prob = mask.astype(np.float32) / 255.0 * 0.4  # inside 0.4, outside 0
    assert mask_to_polygon(prob, threshold=0.5) is None
    polygon = mask_to_polygon(prob, threshold=0.3)
    assert polygon is not None
    assert _max_corner_distance(polygon, corners) <= 1.0


def test_largest_blob_wins() -> None:
    mask, corners = _rotated_rectangle_mask(*RECTANGLES[2])
    cv2.rectangle(mask, (5, 200), (12, 207), 255, thickness=-1)  # a small distractor blob
    polygon = mask_to_polygon(mask)
    assert polygon is not None
    assert _max_corner_distance(polygon, corners) <= 1.0


def test_empty_mask_gives_none() -> None:
    assert mask_to_polygon(np.zeros((50, 60), dtype=np.uint8)) is None
    assert mask_to_polygon(np.zeros((50, 60), dtype=np.float32)) is None
