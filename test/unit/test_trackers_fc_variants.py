"""What each SiamFC-derived variant changes, checked inside its tracker (random weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from siam_tracking_ros.core.geometry import crop_subwindow
from siam_tracking_ros.data.sequences import Sequence
from siam_tracking_ros.models.heads.attention import weighted_xcorr
from siam_tracking_ros.models.heads.cf_layer import center_crop
from siam_tracking_ros.trackers import build_tracker
from siam_tracking_ros.trackers.siam_bm import rotated_crops

SMALL = {"instance_size": 159}


def _build(name: str, **overrides: object):
    torch.manual_seed(0)
    return build_tracker(name, weights="random", device="cpu", **{**SMALL, **overrides})


def _count_calls(module: torch.nn.Module) -> list[int]:
    calls = [0]

    def hook(*_: object) -> None:
        calls[0] += 1

    module.register_forward_hook(hook)
    return calls


# ---------------------------------------------------------------- CFNet

@pytest.mark.parametrize(("layer", "stride"), [("conv1", 4), ("conv2", 8), ("conv5", 8)])
def test_cfnet_layers(layer: str, stride: int) -> None:
    tracker = _build("cfnet", cf_layer=layer)
    cfg, net = tracker.config, tracker.model
    assert cfg.total_stride == stride
    assert len(net.backbone) == int(layer[-1])
    z = torch.rand(1, 3, 159, 159) * 255   # the template is a search-sized context crop
    x = torch.rand(1, 3, 159, 159) * 255
    with torch.no_grad():
        score = net(z, x)["score"]
    assert score.shape == (1, 1, cfg.score_size, cfg.score_size)


def test_cfnet_trains_end_to_end() -> None:
    tracker = _build("cfnet", cf_layer="conv2")
    net = tracker.model.train()
    z = torch.rand(2, 3, 159, 159) * 255
    x = torch.rand(2, 3, 159, 159) * 255
    net.search(net.template(z), x)["score"].square().mean().backward()
    weight = net.backbone.conv1[0].weight
    assert weight.grad is not None and float(weight.grad.abs().sum()) > 0
    # the gradient also flows through the CF (template) branch alone
    net.zero_grad()
    kernel = net.template(z)
    net.head(kernel, net.features(x).detach()).sum().backward()
    assert float(net.backbone.conv1[0].weight.grad.abs().sum()) > 0


@pytest.mark.parametrize(("dx", "dy"), [(9, -6), (-12, 5)])
def test_cfnet_random_features_follow_a_translation(dx: int, dy: int, crossing: Sequence) -> None:
    # the CF is discriminative even on random conv features: the whole geometry (context crop,
    # filter alignment and crop, response -> image mapping) must put the peak on the shifted target
    torch.manual_seed(0)
    tracker = build_tracker("cfnet", weights="random", device="cpu", cf_layer="conv2", scale_num=1,
                            window_influence=0.0)
    frame, box = crossing.frame(0), crossing.boxes[0]
    tracker.init(frame, box)
    x, y, w, h = tracker.track(np.roll(frame, (dy, dx), axis=(0, 1))).box
    moved = np.array([x + w / 2 - (box[0] + box[2] / 2), y + h / 2 - (box[1] + box[3] / 2)])
    np.testing.assert_allclose(moved, [dx, dy], atol=1.0)


@pytest.mark.parametrize("rate", [0.01, 0.0])
def test_cfnet_online_template_update(rate: float, crossing: Sequence) -> None:
    tracker = _build("cfnet", template_lr=rate, scale_num=1)
    shapes = []
    tracker.model.cf.register_forward_pre_hook(lambda _m, args: shapes.append(args[0].shape[-1]))
    tracker.init(crossing.frame(0), crossing.boxes[0])
    before = tracker._kernel.clone()
    frame = crossing.frame(1)
    tracker.track(frame)
    if rate == 0:
        assert torch.equal(tracker._kernel, before)
        return
    with torch.inference_mode():
        fresh = tracker.model.template(tracker.template_crop(tracker.upload(frame)))
    torch.testing.assert_close(tracker._kernel, (1 - rate) * before + rate * fresh)
    assert shapes[0] == 10  # 159-pixel context crop -> 10x10 conv5 map, cropped to 6x6
    assert tracker._kernel.shape[-1] == 6


# ---------------------------------------------------------------- DSiam

def test_dsiam_static_without_online_transforms(crossing: Sequence) -> None:
    tracker = _build("dsiam", online_v=False, online_w=False, scale_num=1)
    tracker.init(crossing.frame(0), crossing.boxes[0])
    first = [k.clone() for k in tracker._kernel["kernels"]]
    tracker.track(crossing.frame(1))
    assert all(torch.equal(a, b) for a, b in zip(first, tracker._kernel["kernels"], strict=True))
    assert tracker._kernel["search_transforms"] == [None, None]


def test_dsiam_identity_prior_at_the_largest_lambda_tracks_like_no_transforms(crossing: Sequence) -> None:
    """The identity prior at the largest λ leaves SiamFC's features: the boxes of no transforms."""
    from siam_tracking_ros.trackers import make_config

    with pytest.raises(ValueError, match="transform_prior"):
        make_config("dsiam", transform_prior="one")
    online = _build("dsiam", transform_prior="identity", lambda_v=1000.0, lambda_w=1000.0, scale_num=1)
    static = _build("dsiam", online_v=False, online_w=False, scale_num=1)
    static.model.load_state_dict(online.model.state_dict())
    boxes = []
    for tracker in (online, static):
        tracker.init(crossing.frame(0), crossing.boxes[0])
        boxes.append([tracker.track(crossing.frame(i)).box for i in range(1, 4)])
    np.testing.assert_allclose(boxes[0], boxes[1], atol=1e-2)


def test_dsiam_transforms_learned_from_previous_frame(crossing: Sequence) -> None:
    tracker = _build("dsiam", lambda_v=1e-9, lambda_w=1e-9, scale_num=1)
    tracker.init(crossing.frame(0), crossing.boxes[0])
    frame = crossing.frame(1)
    tracker.track(frame)
    cfg = tracker.config
    with torch.inference_mode():
        x = crop_subwindow(tracker.upload(frame), tracker.center, tracker.x_sz, cfg.instance_size,
                           tracker.avg_color)
        feats = tracker.model.features(x)
    for kernel, first, search, w_hat in zip(tracker._kernel["kernels"], tracker._first, feats,
                                            tracker._kernel["search_transforms"], strict=True):
        # V maps the first template to the frame t-1 target window (almost exactly for tiny λ)
        target = center_crop(search, first.shape[-1])
        alive = first.abs().amax(dim=(0, 2, 3)) > 1e-3 * float(first.abs().max())  # not ReLU-dead
        assert int(alive.sum()) > 0.5 * alive.numel()
        torch.testing.assert_close(kernel[:, alive], target[:, alive], rtol=0,
                                   atol=1e-3 * float(target.abs().max()))
        assert w_hat is not None and w_hat.is_complex()
        assert w_hat.shape[-2:] == (search.shape[-2], search.shape[-1] // 2 + 1)


def test_dsiam_fuses_two_layers() -> None:
    tracker = _build("dsiam")
    net = tracker.model
    assert net.layers == ("conv4", "conv5") and len(net.heads) == 2
    torch.testing.assert_close(net.fusion.weights().sum(0), torch.ones(5, 5))


# ---------------------------------------------------------------- RASNet

def test_rasnet_search_is_weighted_xcorr() -> None:
    tracker = _build("rasnet")
    net = tracker.model.eval()
    with torch.no_grad():
        net.attention.decode.weight.normal_()  # make the residual attention non-trivial
    z = torch.rand(1, 3, 127, 127) * 255
    x = torch.rand(1, 3, 159, 159) * 255
    with torch.no_grad():
        exemplar, search = net.features(z), net.features(x)
        gamma, beta = net.attention.maps(exemplar)
        expected = net.head.adjust(weighted_xcorr(search, exemplar, gamma, beta))
        torch.testing.assert_close(net(z, x)["score"], expected)


def test_rasnet_attention_once_at_init(crossing: Sequence) -> None:
    tracker = _build("rasnet", scale_num=1)
    calls = _count_calls(tracker.model.attention)
    tracker.init(crossing.frame(0), crossing.boxes[0])
    tracker.track(crossing.frame(1))
    tracker.track(crossing.frame(2))
    assert calls[0] == 1


# ---------------------------------------------------------------- SA-Siam

def test_sa_siam_attention_once_at_init(crossing: Sequence) -> None:
    tracker = _build("sa_siam", scale_num=1)
    counters = [_count_calls(module) for module in tracker.model.attention]
    tracker.init(crossing.frame(0), crossing.boxes[0])
    tracker.track(crossing.frame(1))
    tracker.track(crossing.frame(2))
    assert [c[0] for c in counters] == [1, 1]


def test_sa_siam_weight_mixes_the_branches() -> None:
    tracker = _build("sa_siam")
    net = tracker.model.eval()
    assert net.semantic_weight == pytest.approx(0.3)
    z = torch.rand(1, 3, 159, 159) * 255
    x = torch.rand(1, 3, 159, 159) * 255
    with torch.no_grad():
        features = net.template(z)
        appearance = net.appearance_score(features, x)
        semantic = net.semantic_score(features, x)
        mixed = net.search(features, x)["score"]
        net.semantic_weight = 0.0
        only_appearance = net.search(features, x)["score"]
        net.semantic_weight = 1.0
        only_semantic = net.search(features, x)["score"]
    torch.testing.assert_close(only_appearance, appearance)
    torch.testing.assert_close(only_semantic, semantic)
    torch.testing.assert_close(mixed, 0.3 * semantic + 0.7 * appearance)
    assert not torch.allclose(appearance, semantic)


def test_sa_siam_appearance_kernel_is_the_exemplar_window() -> None:
    tracker = _build("sa_siam")
    net = tracker.model.eval()
    z = torch.rand(1, 3, 159, 159) * 255
    with torch.no_grad():
        features = net.template(z)
        window = net.appearance.template(z[:, :, 16:143, 16:143])  # the central 127 pixels
    torch.testing.assert_close(features["appearance"], window, rtol=1e-4, atol=1e-3)
    assert [k.shape[-1] for k in features["semantic"]] == [8, 6]


# ---------------------------------------------------------------- SiamBM

def test_siam_bm_candidates_and_polygon(crossing: Sequence) -> None:
    tracker = _build("siam_bm", scale_num=1, angle_num=5)
    assert len(tracker.candidates) == 1 + 5 - 1
    frame = crossing.frame(1)
    tracker.init(crossing.frame(0), crossing.boxes[0])
    with torch.inference_mode():
        responses = tracker.responses(frame)
    assert responses.shape[0] == 5
    result = tracker.track(frame)
    assert result.polygon is not None and result.polygon.shape == (4, 2)
    x, y, w, h = result.box
    low, high = result.polygon.min(axis=0), result.polygon.max(axis=0)
    height, width = frame.shape[:2]
    np.testing.assert_allclose([x, y], np.clip(low, 0, [width, height]), atol=1e-4)
    np.testing.assert_allclose([x + w, y + h], np.clip(high, 0, [width, height]), atol=1e-4)
    assert "angle" in result.extra


def test_siam_bm_masks_elongated_targets(crossing: Sequence) -> None:
    frame = crossing.frame(0)
    tall = _build("siam_bm")
    tall.init(frame, crossing.boxes[0])                     # 17 x 50: ratio ~2.9
    kernel, template = tall._kernel, tall._template
    zero_cols = (kernel == 0).all(dim=(0, 1, 2))
    assert bool(zero_cols[0]) and bool(zero_cols[-1]) and not bool(zero_cols[kernel.shape[-1] // 2])
    kept = ~zero_cols
    torch.testing.assert_close(kernel[..., kept], template[..., kept])
    square = _build("siam_bm")
    square.init(frame, (150.0, 100.0, 40.0, 40.0))
    assert torch.equal(square._kernel, square._template)


def test_siam_bm_template_update(crossing: Sequence) -> None:
    tracker = _build("siam_bm", template_lr=0.05, scale_num=1, angle_num=1)
    tracker.init(crossing.frame(0), crossing.boxes[0])
    before = tracker._template.clone()
    frame = crossing.frame(1)
    tracker.track(frame)
    cfg = tracker.config
    with torch.inference_mode():
        z = rotated_crops(tracker.upload(frame), tracker.center, torch.tensor([tracker.z_sz]),
                          torch.tensor([tracker.angle]), cfg.exemplar_size, tracker.avg_color)
        fresh = tracker.model.template(z)
    torch.testing.assert_close(tracker._template, 0.95 * before + 0.05 * fresh)
