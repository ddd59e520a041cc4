"""Loss functions against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from siam_tracking_ros.train.losses import (
    balanced_cross_entropy,
    balanced_logistic,
    iou_loss,
    ltrb_iou,
    weighted_smooth_l1,
)


def test_balanced_cross_entropy_known_value() -> None:
    logits = torch.tensor([[0.0, 0.0], [0.0, math.log(3.0)], [5.0, 1.0]])
    labels = torch.tensor([1, 0, -1])
    # positive: -log 0.5; negative: p(bg) = 1/4 -> -log 0.25; the -1 row is ignored
    expected = 0.5 * math.log(2.0) + 0.5 * math.log(4.0)
    assert balanced_cross_entropy(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_balanced_cross_entropy_without_positives() -> None:
    logits = torch.zeros(3, 2)
    value = balanced_cross_entropy(logits, torch.tensor([0, 0, -1]))
    assert value.item() == pytest.approx(0.5 * math.log(2.0), rel=1e-6)


def test_balanced_logistic_known_value() -> None:
    scores = torch.tensor([2.0, -1.0, 0.0, 7.0])
    labels = torch.tensor([1, 0, 0, -1])
    pos = math.log1p(math.exp(-2.0))
    neg = (math.log1p(math.exp(-1.0)) + math.log(2.0)) / 2
    assert balanced_logistic(scores, labels).item() == pytest.approx(0.5 * pos + 0.5 * neg, rel=1e-6)


def test_weighted_smooth_l1_known_value() -> None:
    pred = torch.zeros(1, 4, 1, 2)
    target = torch.zeros(1, 4, 1, 2)
    target[0, :, 0, 0] = torch.tensor([1.0, 0.05, 0.0, 0.0])
    weight = torch.tensor([[[1.0, 0.0]]])
    beta = 1.0 / 9.0
    expected = (1.0 - beta / 2) + 0.5 * 0.05 ** 2 / beta
    assert weighted_smooth_l1(pred, target, weight, beta).item() == pytest.approx(expected, rel=1e-5)


def test_ltrb_iou_and_iou_losses() -> None:
    pred = torch.tensor([[10.0, 10.0, 10.0, 10.0]])  # 20x20 box
    target = torch.tensor([[10.0, 10.0, 0.0, 10.0]])  # 10x20 box inside it
    iou, _ = ltrb_iou(pred, target)
    assert iou.item() == pytest.approx((200 + 1) / (400 + 1))
    assert iou_loss(pred, target, "linear").item() == pytest.approx(1 - 201 / 401, rel=1e-6)
    assert iou_loss(pred, target, "log").item() == pytest.approx(-math.log(201 / 401), rel=1e-6)
    assert iou_loss(pred, pred, "giou").item() == pytest.approx(0.0, abs=1e-6)
    assert iou_loss(torch.zeros(0, 4), torch.zeros(0, 4)).item() == 0.0
    with pytest.raises(ValueError):
        iou_loss(pred, target, "dice")
