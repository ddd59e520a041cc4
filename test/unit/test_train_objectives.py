"""Label assignment per head kind (hand-checked small cases) and the objective registry."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from siam_tracking_ros.core.anchors import generate_anchors
from siam_tracking_ros.train.objectives import (
    HeadGeometry,
    Objective,
    geometry_from,
    list_objectives,
    make_objective,
    register_objective,
)
from siam_tracking_ros.train.objectives.rpn import anchor_iou, make_anchors
from siam_tracking_ros.train.objectives.sampling import labels_from

RNG = np.random.default_rng(0)


def test_positions_put_middle_cell_on_patch_centre() -> None:
    geom = HeadGeometry(instance_size=255, score_size=17, stride=8)
    pos = geom.positions()
    assert pos[8] == pytest.approx(127.5)
    assert pos[1] - pos[0] == 8


def test_fc_radius_labels_hand_checked() -> None:
    # 5x5 map, stride 8, cells at 100.5 + 8 (i - 2): target centre on the middle cell
    geom = HeadGeometry(instance_size=201, score_size=5, stride=8)
    obj = make_objective("fc", geom, r_pos=8.5, r_neg=12.0)
    box = np.array([90.5, 90.5, 20.0, 20.0])  # centre (100.5, 100.5)
    labels = obj.assign(box, False, RNG)["score_label"]
    expected = np.full((5, 5), 0, dtype=np.int8)
    expected[2, 2] = 1
    expected[1, 2] = expected[3, 2] = expected[2, 1] = expected[2, 3] = 1  # distance 8
    expected[1, 1] = expected[1, 3] = expected[3, 1] = expected[3, 3] = -1  # distance 11.3
    np.testing.assert_array_equal(labels, expected)
    negative = obj.assign(box, True, RNG)["score_label"]
    assert (negative == 0).all()


def test_rpn_anchors_match_core_layout() -> None:
    geom = HeadGeometry(instance_size=255, score_size=17, stride=8)
    ours = make_anchors(geom)  # (4, k, S, S)
    core = generate_anchors(17, 8, geom.ratios, geom.scales, center=127.5)  # (k*S*S, 4)
    np.testing.assert_allclose(ours.reshape(4, -1).T, core, atol=1e-4)


def test_rpn_iou_thresholds() -> None:
    geom = HeadGeometry(instance_size=255, score_size=17, stride=8, ratios=(1.0,), scales=(8.0,))
    obj = make_objective("rpn", geom, pos_num=10_000, total_num=10_000)
    box = np.array([127.5 - 32, 127.5 - 32, 64.0, 64.0])  # exactly the centre anchor
    targets = obj.assign(box, False, RNG)
    iou = anchor_iou(obj.anchors, box)
    labels = targets["cls_label"]
    assert labels[0, 8, 8] == 1 and iou[0, 8, 8] == pytest.approx(1.0)
    # one cell (8 px) away: IoU 56/72 = 0.78 -> positive; two cells: 48/80 = 0.6 -> not > 0.6
    assert labels[0, 8, 9] == 1
    assert iou[0, 8, 10] == pytest.approx(0.6) and labels[0, 8, 10] == -1
    assert (labels[iou < 0.3] == 0).all() and (labels[iou > 0.6] == 1).all()
    np.testing.assert_allclose(targets["loc_target"][:, 0, 8, 8], 0.0, atol=1e-6)
    assert targets["loc_weight"].sum() == pytest.approx(1.0)


def test_rpn_samples_at_most_16_positives_of_64() -> None:
    geom = HeadGeometry(instance_size=255, score_size=25, stride=8, scales=(7.0, 7.5, 8.0, 8.5, 9.0))
    obj = make_objective("rpn", geom)
    box = np.array([90.0, 100.0, 64.0, 64.0])
    for seed in range(5):
        labels = obj.assign(box, False, np.random.default_rng(seed))["cls_label"]
        iou = anchor_iou(obj.anchors, box)
        assert (iou > 0.6).sum() > 16  # more candidates than kept
        assert (labels == 1).sum() == 16
        assert (labels >= 0).sum() == 64


def test_rpn_negative_pair_labels_only_negatives() -> None:
    obj = make_objective("rpn", HeadGeometry())
    targets = obj.assign(np.array([100.0, 100.0, 50.0, 50.0]), True, RNG)
    assert (targets["cls_label"] == 1).sum() == 0
    assert 0 < (targets["cls_label"] == 0).sum() <= 16
    assert targets["loc_weight"].sum() == 0


def test_labels_from_counts() -> None:
    pos = np.zeros(100, bool)
    pos[:5] = True
    labels = labels_from(pos, ~pos, 16, 64, RNG)
    assert (labels == 1).sum() == 5 and (labels == 0).sum() == 59


def test_ban_point_labels_hand_checked() -> None:
    # 16x16 map, stride 16, 255 crop: points at 127.5 + 16 (i - 8)
    geom = HeadGeometry(instance_size=255, score_size=16, stride=16)
    obj = make_objective("ban", geom, pos_num=1000, total_num=1000)
    box = np.array([127.5 - 40, 127.5 - 24, 80.0, 48.0])  # centre on point (8, 8)
    targets = obj.assign(box, False, RNG)
    labels = targets["cls_label"]
    # inner ellipse semi-axes (20, 12): points (8,7) and (8,9) are 16 px apart in x -> inside;
    # (7,8) is 16 px away in y > 12 -> not positive
    assert labels[8, 8] == 1 and labels[8, 7] == 1 and labels[8, 9] == 1
    assert labels[7, 8] == -1 and (labels == 1).sum() == 3
    # outer ellipse semi-axes (40, 24): (8, 11) is 48 px in x -> negative; (8, 10) 32 px -> ignored
    assert labels[8, 11] == 0 and labels[8, 10] == -1
    np.testing.assert_allclose(targets["loc_target"][:, 8, 8], [40, 24, 40, 24])
    np.testing.assert_allclose(targets["loc_target"][:, 8, 9], [56, 24, 24, 24])


def test_ban_sampling_and_negative_pairs() -> None:
    geom = HeadGeometry(instance_size=255, score_size=16, stride=16)
    obj = make_objective("ban", geom)
    big = np.array([20.0, 20.0, 215.0, 215.0])
    labels = obj.assign(big, False, RNG)["cls_label"]
    assert (labels == 1).sum() == 16
    neg = obj.assign(big, True, RNG)["cls_label"]
    assert (neg == 1).sum() == 0 and (neg == 0).sum() == 16


def test_mask_objective_targets_and_loss() -> None:
    geom = HeadGeometry(instance_size=255, score_size=25, stride=8)
    obj = make_objective("mask", geom)
    box = np.array([100.0, 100.0, 56.0, 56.0])
    mask = np.zeros((255, 255), np.float32)
    mask[100:156, 100:156] = 1.0
    t = obj.assign(box, False, RNG, mask)
    assert t["mask_weight"] == 1.0 and t["mask_target"].shape == (1, 63, 63)
    batch = {k: torch.from_numpy(np.asarray(v))[None] for k, v in t.items()}
    k = len(geom.ratios) * len(geom.scales)
    outputs = {"cls": torch.zeros(1, 2 * k, 25, 25), "loc": torch.zeros(1, 4 * k, 25, 25),
               "mask": torch.zeros(1, 63 * 63, 25, 25, requires_grad=True)}
    total, parts = obj.loss(outputs, batch)
    assert parts["mask"].item() == pytest.approx(np.log(2.0), rel=1e-4)  # logits 0 -> log 2
    total.backward()
    assert outputs["mask"].grad.abs().sum() > 0


def test_registry_knows_kinds_and_accepts_new_ones() -> None:
    assert {"fc", "rpn", "ban", "mask"} <= set(list_objectives())
    with pytest.raises(KeyError, match="known"):
        make_objective("no-such-head", HeadGeometry())
    with pytest.raises(ValueError, match="unknown option"):
        make_objective("fc", HeadGeometry(), radius=3)

    @register_objective("test-constant")
    class Constant(Objective):
        def assign(self, box, negative, rng, mask=None):
            return {"flag": np.asarray(negative)}

        def loss(self, outputs, targets):
            value = outputs["score"].sum() * 0
            return value, {}

    assert isinstance(make_objective("test-constant", HeadGeometry()), Constant)


@dataclass
class _Cfg:
    exemplar_size: int = 127
    instance_size: int = 255
    total_stride: int = 8
    anchor_ratios: tuple = (1.0, 2.0)


class _TinyFC(torch.nn.Module):
    head_kind = "fc"

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 8, stride=8)

    def template(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv(z)

    def search(self, zf: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        xf = self.conv(x)
        out = torch.nn.functional.conv2d(xf.reshape(1, -1, *xf.shape[2:]), zf, groups=zf.shape[0])
        return {"score": out.reshape(x.shape[0], 1, *out.shape[2:])}

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.search(self.template(z), x)


def test_geometry_from_config_and_probe() -> None:
    geom = geometry_from(_Cfg(), _TinyFC())
    assert (geom.exemplar_size, geom.instance_size, geom.stride) == (127, 255, 8)
    assert geom.score_size == 31 - 15 + 1
    assert geom.ratios == (1.0, 2.0)
