"""Training objectives of C-RPN (``cascade_rpn``) and SINT (``sint``): per-stage labels on a
hand-checked case, the filter between stages on the real CRPNNet, SINT's candidate labels and
template box, SINT's loss falling on real crops, and one short run of each through the trainer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from siam_tracking_ros.core.anchors import MAX_LOG_SCALE, decode_deltas, flatten_loc, generate_anchors
from siam_tracking_ros.core.geometry import iou_xywh
from siam_tracking_ros.data.sequences import load_sequence
from siam_tracking_ros.models.heads.cascade_rpn import background_probability
from siam_tracking_ros.trackers.registry import build_tracker
from siam_tracking_ros.train.augment import AugmentSpec, make_patch
from siam_tracking_ros.train.config import config_from_dict
from siam_tracking_ros.train.objectives import HeadGeometry, geometry_from, make_objective
from siam_tracking_ros.train.objectives.rpn import anchor_iou
from siam_tracking_ros.train.objectives.sint import template_box
from siam_tracking_ros.train.pairs import PairDataset, PairSampler, PairSpec
from siam_tracking_ros.train.sources import Source, sequence_tracks
from siam_tracking_ros.train.trainer import Trainer

K, S = 5, 17  # SiamRPN anchors: ratios (0.33, 0.5, 1, 2, 3), 17 x 17 map; ratio 1 -> 64 x 64 px
TARGET = np.array([95.5, 95.5, 64.0, 64.0])  # centre (127.5, 127.5): exactly anchor (k=2, 8, 8)


def _batch(targets: dict[str, np.ndarray], box: np.ndarray, negative: bool) -> dict[str, torch.Tensor]:
    batch = {k: torch.from_numpy(np.asarray(v))[None] for k, v in targets.items()}
    batch["box"] = torch.as_tensor(box, dtype=torch.float32)[None]
    batch["negative"] = torch.tensor([negative])
    return batch


def _hand_outputs() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Three stages. Stage 1 calls everything background (prob ~1 > 0.95) except anchor (2, 8, 10)
    and the whole top row; it moves anchor (2, 8, 10) 16 px left onto the target. Stages 2 and 3
    keep everything and regress nothing."""
    cls1 = torch.zeros(1, 2 * K, S, S)
    cls1[:, :K], cls1[:, K:] = 10.0, -10.0
    cls1[0, [2, K + 2], 8, 10] = 0.0
    cls1[0, :, 0, :] = 0.0
    loc1 = torch.zeros(1, 4 * K, S, S)
    loc1[0, 0 * K + 2, 8, 10] = -16.0 / 64.0  # dx of anchor k=2 (channel block dx, anchor 2)
    zeros_cls, zeros_loc = torch.zeros(1, 2 * K, S, S), torch.zeros(1, 4 * K, S, S)
    return [cls1, zeros_cls, zeros_cls.clone()], [loc1, zeros_loc, zeros_loc.clone()]


def test_cascade_labels_per_stage_hand_checked() -> None:
    obj = make_objective("cascade_rpn", HeadGeometry(), theta=0.95)
    stage1 = obj.assign(TARGET, False, np.random.default_rng(0))
    # stage 1 (regular anchors): (2, 8, 8) is the target; (2, 8, 10) is 16 px off -> IoU 0.6, ignored
    assert stage1["cls_label"][2, 8, 8] == 1 and stage1["cls_label"][2, 8, 10] == -1
    cls_stages, loc_stages = _hand_outputs()
    stage2, stage3 = obj.later_stage_targets(cls_stages, loc_stages, torch.as_tensor(TARGET)[None],
                                             torch.tensor([False]))
    kept = np.zeros((K, S, S), dtype=bool)
    kept[2, 8, 10] = True
    kept[:, 0, :] = True
    for stage in (stage2, stage3):
        labels = stage["cls_label"][0].numpy()
        # the refined (2, 8, 10) now equals the target; (2, 8, 8) has IoU 1 but was filtered out
        assert labels[2, 8, 10] == 1 and labels[2, 8, 8] == -1
        assert (labels == 1).sum() == 1
        assert (labels[~kept] == -1).all()
        assert (labels == 0).sum() == 63 and (labels[0, 0] >= 0).any()  # top row: IoU 0 -> negatives
        np.testing.assert_allclose(stage["loc_target"][0, :, 2, 8, 10].numpy(), 0.0, atol=1e-6)
        assert stage["loc_weight"][0, 2, 8, 10] == pytest.approx(1.0)


def test_cascade_first_stage_assignment_is_the_rpn_one() -> None:
    obj = make_objective("cascade_rpn", HeadGeometry())
    box = np.array([80.0, 110.0, 70.0, 40.0])
    for negative in (False, True):
        plain = obj.assign(box, negative, np.random.default_rng(3))
        again = obj.assign_stage(obj.anchors, np.ones((K, S, S), dtype=bool), box, negative,
                                 np.random.default_rng(3))
        for key, value in plain.items():
            np.testing.assert_array_equal(value, again[key], err_msg=key)


def test_cascade_negative_pair_labels_only_kept_anchors_inside_the_distractor() -> None:
    obj = make_objective("cascade_rpn", HeadGeometry())
    cls_stages, loc_stages = _hand_outputs()
    distractor = np.array([0.0, 50.0, 255.0, 30.0])  # covers the top row (y = 63.5) only
    stage2, _ = obj.later_stage_targets(cls_stages, loc_stages, torch.as_tensor(distractor)[None],
                                        torch.tensor([True]))
    labels = stage2["cls_label"][0].numpy()
    assert (labels == 1).sum() == 0 and (labels == 0).sum() == 16
    assert (labels[:, 0, :] == 0).sum() == 16  # only the kept top row lies inside
    assert stage2["loc_weight"].sum() == 0


def test_cascade_loss_sums_the_stages_and_reaches_every_stage() -> None:
    obj = make_objective("cascade_rpn", HeadGeometry(), stage_weights=[1.0, 2.0, 0.5])
    cls_stages, loc_stages = _hand_outputs()
    cls_stages = [c.clone().requires_grad_(True) for c in cls_stages]
    loc_stages = [v.clone().requires_grad_(True) for v in loc_stages]
    batch = _batch(obj.assign(TARGET, False, np.random.default_rng(0)), TARGET, False)
    total, parts = obj.loss({"cls_stages": cls_stages, "loc_stages": loc_stages}, batch)
    weighted = parts["cls1"] + 1.2 * parts["loc1"] + 2.0 * (parts["cls2"] + 1.2 * parts["loc2"]) \
        + 0.5 * (parts["cls3"] + 1.2 * parts["loc3"])
    assert total.item() == pytest.approx(weighted.item(), rel=1e-5)
    total.backward()
    assert all(c.grad.abs().sum() > 0 for c in cls_stages)


@pytest.fixture(scope="module")
def crossing_patches(sequences_dir: Path):
    sequence = load_sequence(sequences_dir / "otb_Crossing")
    rng = np.random.default_rng(0)
    frames = [0, 10]
    template = make_patch(sequence.frame(frames[0]), sequence.boxes[frames[0]], 127, 1.0, AugmentSpec(), rng)
    search = make_patch(sequence.frame(frames[1]), sequence.boxes[frames[1]], 255, 255 / 127,
                        AugmentSpec(shift=24), rng)
    return template, search


def _chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()[None]


def test_cascade_filter_between_stages_on_the_real_network(crossing_patches) -> None:
    template, search = crossing_patches
    torch.manual_seed(0)
    tracker = build_tracker("c_rpn", weights="random", device="cpu")
    model = tracker.model
    assert model.head_kind == "cascade_rpn"
    geometry = geometry_from(tracker.config, model)
    with torch.no_grad():
        out = model(_chw(template.image), _chw(search.image))
    background = background_probability(out["cls_stages"][0])
    theta = float(background.min() + background.max()) / 2  # (random init: probabilities near 0 or 1)
    obj = make_objective(model.head_kind, geometry, theta=theta, pos_iou=0.3, neg_iou=0.2)
    stage2 = obj.later_stage_targets(out["cls_stages"], out["loc_stages"],
                                     torch.as_tensor(search.box, dtype=torch.float32)[None],
                                     torch.tensor([False]))[0]
    labels = stage2["cls_label"][0].reshape(-1).numpy()
    filtered = (background > theta).numpy()
    assert 0 < filtered.sum() < filtered.size
    assert (labels[filtered] == -1).all() and (labels[~filtered] >= 0).any()
    # positives are judged on the boxes stage 1 regressed, not on the regular anchors
    anchors = torch.as_tensor(generate_anchors(S, 8, center=127.5))
    refined = decode_deltas(flatten_loc(out["loc_stages"][0])[0], anchors, MAX_LOG_SCALE)
    refined = refined.double().numpy().T
    iou = anchor_iou(refined, search.box)
    assert (iou[labels == 1] > 0.3).all() and (iou[labels == 0] < 0.2).all()


def test_sint_template_box_matches_the_template_crop(crossing_patches) -> None:
    template, _ = crossing_patches  # cut without augmentation
    x1, y1, x2, y2 = template_box(template.box[3] / template.box[2], 127, 0.5)
    np.testing.assert_allclose([x1, y1, x2 - x1, y2 - y1], template.box, atol=1e-6)
    np.testing.assert_allclose(template_box(1.0, 127, 0.5), [31.75, 31.75, 95.25, 95.25])


def test_sint_candidate_labels() -> None:
    obj = make_objective("sint", HeadGeometry())
    box = np.array([90.0, 100.0, 60.0, 40.0])
    targets = obj.assign(box, False, np.random.default_rng(0))
    corners, labels = targets["candidates"], targets["candidate_label"]
    assert corners.shape == (64, 4) and (labels == 1).sum() == 16 and (labels == 0).sum() == 48
    xywh = np.concatenate([corners[:, :2], corners[:, 2:] - corners[:, :2]], 1)
    iou = iou_xywh(xywh, np.asarray(box)[None])
    assert (iou[labels == 1] > 0.7).all() and (iou[labels == 0] < 0.5).all()
    negative = obj.assign(box, True, np.random.default_rng(0))["candidate_label"]
    assert (negative == 1).sum() == 0 and (negative == 0).sum() == 48


def _sint_batch(sequences_dir: Path, objective, count: int) -> dict[str, torch.Tensor]:
    tracks = sequence_tracks(str(sequences_dir), ["otb_Dudek_first20", "otb_Crossing"])
    source = Source("seq", tracks, 1.0, 10)
    dataset = PairDataset(PairSampler([source], PairSpec(negative=0.25)), objective, count, seed=0)
    return default_collate([dataset[i] for i in range(count)])


def test_sint_loss_falls_on_real_crops(sequences_dir: Path) -> None:
    torch.manual_seed(0)
    tracker = build_tracker("sint", weights="random", device="cpu")
    net = tracker.model.train()
    objective = make_objective(net.head_kind, geometry_from(tracker.config, net))
    batch = _sint_batch(sequences_dir, objective, 4)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(6):
        net(batch["template"].float(), batch["search"].float())
        loss, parts = objective.loss({}, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        assert set(parts) == {"pos", "neg"}
    assert losses[-1] < 0.8 * losses[0], losses


def test_sint_loss_needs_a_forward_first() -> None:
    objective = make_objective("sint", HeadGeometry())
    with pytest.raises(RuntimeError, match="forward"):
        objective.loss({}, {})


def _run_config(sequences_dir: Path, out: Path, variant: str) -> dict:
    return {"variant": variant, "output_dir": str(out), "device": "cpu", "threads": 1, "progress": False,
            "log_every": 1,
            "datasets": [{"type": "sequences", "root": str(sequences_dir), "names": ["otb_Dudek_first20"],
                          "frame_gap": 10}],
            "pairs": {"negative": 0.5},
            "schedule": {"epochs": 1, "samples_per_epoch": 4, "batch_size": 2, "warmup_epochs": 0}}


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["c_rpn", "sint", "sint_pp"])
def test_cascade_and_sint_train_through_the_trainer(variant: str, sequences_dir: Path,
                                                    tmp_path: Path) -> None:
    trainer = Trainer(config_from_dict(_run_config(sequences_dir, tmp_path / "run", variant)))
    expected = {"c_rpn": "cascade_rpn", "sint": "sint", "sint_pp": "sint"}[variant]
    assert trainer.objective.kind == expected
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    summary = trainer.run()
    assert summary["steps"] == 2
    rows = (tmp_path / "run" / "train_log.csv").read_text().splitlines()
    header = rows[0].split(",")
    for row in rows[1:]:
        parts = dict(zip(header, map(float, row.split(",")), strict=True))
        assert np.isfinite(parts["loss"]) and parts["loss"] > 0
    if variant == "c_rpn":
        assert {"cls1", "cls2", "cls3", "loc3"} <= set(header)
    else:
        assert {"pos", "neg"} <= set(header)
    changed = [k for k, v in trainer.model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("backbone") for k in changed)
