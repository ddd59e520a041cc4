"""The four seed variants as registered trackers: contract, determinism, one real frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from siam_tracking_ros.trackers.registry import build_tracker, list_trackers, make_config

# small widths keep these tests fast; the architecture is the same as the defaults
SMALL = {
    "siamdw_fc": ("siamdw", {"head": "fc", "widths": (16, 32)}),
    "siamdw_rpn": ("siamdw", {"head": "upchannel", "widths": (16, 32), "hidden": 32}),
    "c_rpn": ("c_rpn", {"width_mult": 0.25, "hidden": 32}),
    "c_rpn_1stage": ("c_rpn", {"width_mult": 0.25, "hidden": 32, "stages": 1}),
    "sint": ("sint", {"widths": (8, 16, 32, 64, 64), "fc_dim": 64}),
    "sint_pp": ("sint_pp", {"widths": (8, 16, 32, 64, 64), "fc_dim": 64}),
}


def test_registered_names_and_option_checks() -> None:
    names = list_trackers()
    for name in ("siamdw", "c_rpn", "sint", "sint_pp"):
        assert name in names
    assert make_config("siamdw").window_influence == pytest.approx(0.2897)
    assert make_config("siamdw", head="upchannel").window_influence == pytest.approx(0.39)
    with pytest.raises(ValueError, match="head"):
        make_config("siamdw", head="ban")
    with pytest.raises(ValueError, match="stages"):
        make_config("c_rpn", stages=4)
    assert make_config("c_rpn").theta == pytest.approx(0.95)


@pytest.mark.parametrize("key", ["siamdw_fc", "siamdw_rpn", "c_rpn"])
def test_siamese_networks_follow_the_contract(key: str) -> None:
    name, options = SMALL[key]
    torch.manual_seed(0)
    tracker = build_tracker(name, weights="random", device="cpu", **options)
    net = tracker.model.eval()
    z, x = torch.rand(1, 3, 127, 127) * 255, torch.rand(1, 3, 255, 255) * 255
    with torch.no_grad():
        out = net(z, x)
        again = net.search(net.template(z), x)
    if net.head_kind == "fc":
        assert out["score"].shape == (1, 1, 17, 17)
    else:
        assert net.head_kind == ("cascade_rpn" if key == "c_rpn" else "rpn")
        assert out["cls"].shape == (1, 10, 17, 17) and out["loc"].shape == (1, 20, 17, 17)
    for k in out:
        if isinstance(out[k], torch.Tensor):
            assert torch.equal(out[k], again[k])  # deterministic in eval mode


def test_c_rpn_returns_every_stage() -> None:
    torch.manual_seed(1)
    net = build_tracker("c_rpn", weights="random", device="cpu", **SMALL["c_rpn"][1]).model
    with torch.no_grad():
        out = net(torch.rand(2, 3, 127, 127) * 255, torch.rand(2, 3, 255, 255) * 255)
    assert len(out["cls_stages"]) == 3 and torch.equal(out["cls"], out["cls_stages"][0])
    assert all(c.shape == (2, 10, 17, 17) for c in out["cls_stages"])


def test_sint_network_contract() -> None:
    torch.manual_seed(2)
    net = build_tracker("sint", weights="random", device="cpu", **SMALL["sint"][1]).model
    assert net.head_kind == "sint"
    z, x = torch.rand(3, 3, 64, 64) * 255, torch.rand(3, 3, 64, 64) * 255
    with torch.no_grad():
        out = net(z, x)
        boxes = torch.tensor([[0.0, 0.0, 64.0, 64.0], [10.0, 10.0, 40.0, 50.0]])
        per_box = net.search(net.template(z[:1], boxes[:1]), x[:1], boxes)
    assert out["score"].shape == (3,) and out["embedding"].shape[0] == 3
    torch.testing.assert_close(out["embedding"].norm(dim=1), torch.ones(3))
    assert per_box["score"].shape == (2,)
    with torch.no_grad():
        self_match = net.search(net.template(z[:1]), z[:1])["score"]
    torch.testing.assert_close(self_match, torch.ones(1))


@pytest.mark.shared_data
@pytest.mark.parametrize("key", list(SMALL))
def test_random_tracker_runs_on_a_real_frame(key: str, crossing) -> None:
    name, options = SMALL[key]
    torch.manual_seed(3)
    tracker = build_tracker(name, weights="random", device="cpu", **options)
    frame0, frame1 = crossing.frame(0), crossing.frame(1)
    box = tuple(crossing.boxes[0])
    tracker.init(frame0, box)
    first = tracker.track(frame1)
    tracker.reset()
    tracker.init(frame0, box)
    second = tracker.track(frame1)
    assert first.box == second.box and first.score == second.score
    x, y, w, h = first.box
    height, width = frame1.shape[:2]
    assert np.isfinite(first.box).all()
    assert min(x, y, w, h) >= 0 and x + w <= width + 1e-6 and y + h <= height + 1e-6
    assert 0.0 <= first.score <= 1.0


@pytest.mark.parametrize("variant", ["siamrpn", "dasiamrpn"])
def test_rpn_presence_calibration_maps_the_raw_probability(variant: str) -> None:
    """``score_calibration`` (stored by siam-train features) turns the chosen proposal's
    probability into the published presence probability; the raw one stays in ``extra``."""
    from siam_tracking_ros.core.presence import platt_probability

    frame = (np.random.default_rng(0).random((200, 240, 3)) * 255).astype(np.uint8)
    results = []
    for calibration in (None, (2.0, -1.0)):
        torch.manual_seed(0)
        tracker = build_tracker(variant, weights="random", device="cpu", backbone="mobilenetv2",
                                head="depthwise", hidden=64, score_calibration=calibration)
        tracker.init(frame, (80, 60, 40, 50))
        results.append(tracker.track(frame))
    raw, calibrated = results
    assert raw.score == raw.extra["raw_score"] == calibrated.extra["raw_score"]
    assert calibrated.score == pytest.approx(platt_probability(raw.score, (2.0, -1.0)))


def test_c_rpn_on_pretrained_mobilenetv2_levels() -> None:
    """Two depthwise stages on MobileNetV2's dilated features[:17] then features[:14] (deepest
    first), one anchor grid; the student trains them from cached features[:14] maps."""
    from siam_tracking_ros.train.students import SiameseStudent

    options = {"backbone": "mobilenetv2", "head": "depthwise", "hidden": 32, "anchor_scales": [4.0]}
    torch.manual_seed(3)
    tracker = build_tracker("c_rpn", weights="random", device="cpu", **options)
    net = tracker.model.eval()
    assert tracker.config.stages == 2 and tracker.config.anchor_stride == 16
    z, x = torch.rand(2, 3, 127, 127) * 255, torch.rand(2, 3, 255, 255) * 255
    with torch.no_grad():
        deep, shallow = net.backbone(x)
        out = net(z, x)
        student = SiameseStudent("c_rpn", net, tracker.config, {})
        cached = student(student.frozen_features(z), student.frozen_features(x))
    assert (deep.shape[1], shallow.shape[1]) == (160, 96)  # deepest first
    assert all(c.shape == (2, 10, 9, 9) for c in out["cls_stages"])
    assert all(v.shape == (2, 20, 9, 9) for v in out["loc_stages"])
    for got, want in zip(cached["cls_stages"], out["cls_stages"], strict=True):
        torch.testing.assert_close(got, want)
    batch = {"search_box": torch.tensor([[100.0, 110.0, 60.0, 40.0]] * 2),
             "negative": torch.tensor([False, True])}
    targets = student.targets(batch, np.random.default_rng(0))
    assert targets["box"].shape == (2, 4) and targets["negative"].tolist() == [False, True]
    student.train_mode()
    loss, parts = student.objective.loss(student(student.frozen_features(z), student.frozen_features(x)),
                                         targets)
    assert torch.isfinite(loss) and {"cls1", "cls2", "loc1", "loc2"} <= set(parts)
    with pytest.raises(ValueError, match="stages"):
        make_config("c_rpn", backbone="mobilenetv2", stages=3)
    other = build_tracker("c_rpn", weights="random", device="cpu", deep_first=False, **options).model
    with torch.no_grad():
        assert [level.shape[1] for level in other.backbone(x)] == [96, 160]  # shallow first
