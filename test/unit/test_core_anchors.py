"""Anchor generation, delta coding, IoU and NMS against hand-worked values and naive loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from siam_tracking_ros.core.anchors import (
    MAX_LOG_SCALE,
    anchor_shapes,
    decode_deltas,
    encode_deltas,
    flatten_cls,
    flatten_loc,
    foreground_probability,
    generate_anchors,
    iou_corners,
    nms_cxcywh,
    pairwise_iou_cxcywh,
    score_map_size,
)


def test_anchor_shapes_hand_worked() -> None:
    # stride 8 -> area 64; r=0.33: ws=int(sqrt(64/0.33))=13, hs=int(13*0.33)=4; times scale 8
    expected = [[104, 32], [88, 40], [64, 64], [40, 80], [32, 96]]
    np.testing.assert_array_equal(anchor_shapes(8, [0.33, 0.5, 1, 2, 3], [8]), expected)
    # two scales: ratio-major, scale-minor
    np.testing.assert_array_equal(anchor_shapes(8, [1.0], [4, 8]), [[32, 32], [64, 64]])


def test_score_map_sizes() -> None:
    assert score_map_size(255, 127, 8) == 17
    assert score_map_size(271, 127, 8) == 19
    assert score_map_size(287, 127, 8) == 21
    assert score_map_size(255, 127, 8, base_size=8) == 25


def test_generate_anchors_layout_matches_loop() -> None:
    size, stride = 5, 8
    ratios, scales = [0.5, 1.0, 2.0], [8.0]
    anchors = generate_anchors(size, stride, ratios, scales)
    shapes = anchor_shapes(stride, ratios, scales)
    assert anchors.shape == (3 * size * size, 4)
    for k in range(3):
        for row in range(size):
            for col in range(size):
                index = k * size * size + row * size + col
                expected = [(col - 2) * stride, (row - 2) * stride, *shapes[k]]
                np.testing.assert_array_equal(anchors[index], expected)
    # the middle cell sits on the crop centre, and ``center`` shifts everything
    assert tuple(anchors[2 * size + 2, :2]) == (0.0, 0.0)
    shifted = generate_anchors(size, stride, ratios, scales, center=127.0)
    np.testing.assert_array_equal(shifted[:, :2], anchors[:, :2] + 127.0)


def test_generate_anchors_even_size_uses_floor_half() -> None:
    anchors = generate_anchors(4, 8, [1.0], [8.0])
    assert anchors[0, 0] == -16.0 and anchors[3, 0] == 8.0


def test_decode_hand_worked() -> None:
    anchors = torch.tensor([[0.0, 0.0, 64.0, 64.0], [8.0, -8.0, 32.0, 96.0]])
    deltas = torch.tensor([[0.5, -0.25, math.log(2.0), 0.0], [0.0, 0.0, 0.0, math.log(0.5)]])
    boxes = decode_deltas(deltas, anchors)
    torch.testing.assert_close(boxes, torch.tensor([[32.0, -16.0, 128.0, 64.0], [8.0, -8.0, 32.0, 48.0]]))


def test_encode_is_inverse_of_decode() -> None:
    g = torch.Generator().manual_seed(0)
    anchors = torch.from_numpy(generate_anchors(7))
    deltas = torch.randn(2, anchors.shape[0], 4, generator=g, dtype=torch.float64)
    boxes = decode_deltas(deltas, anchors.double())
    torch.testing.assert_close(encode_deltas(boxes, anchors.double()), deltas)


def test_decode_clamps_log_scale() -> None:
    anchors = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    boxes = decode_deltas(torch.tensor([[0.0, 0.0, 1e4, -1e4]]), anchors, MAX_LOG_SCALE)
    assert torch.isfinite(boxes).all()
    torch.testing.assert_close(boxes[0, 2:], torch.tensor([1000.0 / 16 * 10, 20 * 16 / 1000.0]))


def test_flatten_matches_channel_layout() -> None:
    k, s = 5, 3
    g = torch.Generator().manual_seed(1)
    cls = torch.randn(2, 2 * k, s, s, generator=g)
    loc = torch.randn(2, 4 * k, s, s, generator=g)
    flat_cls, flat_loc = flatten_cls(cls), flatten_loc(loc)
    for b in range(2):
        for a in range(k):
            for row in range(s):
                for col in range(s):
                    index = a * s * s + row * s + col
                    for c in range(2):
                        assert flat_cls[b, index, c] == cls[b, c * k + a, row, col]
                    for c in range(4):
                        assert flat_loc[b, index, c] == loc[b, c * k + a, row, col]
    prob = foreground_probability(cls)
    expected = torch.softmax(torch.stack([cls[:, :k], cls[:, k:]], dim=-1), dim=-1)[..., 1]
    torch.testing.assert_close(prob, expected.reshape(2, -1))


def test_iou_hand_worked() -> None:
    a = torch.tensor([0.0, 0.0, 2.0, 2.0])
    assert float(iou_corners(a, torch.tensor([1.0, 1.0, 3.0, 3.0]))) == pytest.approx(1 / 7)
    assert float(iou_corners(a, torch.tensor([2.0, 0.0, 4.0, 2.0]))) == 0.0
    assert float(iou_corners(a, a)) == 1.0
    assert float(iou_corners(torch.zeros(4), torch.zeros(4))) == 0.0
    matrix = pairwise_iou_cxcywh(torch.tensor([[1.0, 1.0, 2.0, 2.0]]),
                                 torch.tensor([[2.0, 2.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0]]))
    torch.testing.assert_close(matrix, torch.tensor([[1 / 7, 1.0]]))


def naive_nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> list[int]:
    remaining = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    keep = []
    while remaining:
        best = remaining.pop(0)
        keep.append(best)
        remaining = [i for i in remaining
                     if float(pairwise_iou_cxcywh(boxes[best:best + 1], boxes[i:i + 1])) <= threshold]
    return keep


def test_nms_matches_naive() -> None:
    g = torch.Generator().manual_seed(2)
    centres = torch.rand(40, 2, generator=g) * 50
    sizes = torch.rand(40, 2, generator=g) * 30 + 5
    boxes, scores = torch.cat([centres, sizes], dim=1), torch.rand(40, generator=g)
    kept = nms_cxcywh(boxes, scores, 0.3)
    assert kept.tolist() == naive_nms(boxes, scores, 0.3)
    assert nms_cxcywh(boxes, scores, 0.3, max_keep=3).tolist() == kept[:3].tolist()
