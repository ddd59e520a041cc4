"""Contract checks shared by the SiamFC-derived seed variants (random weights, small search crops)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from siam_tracking_ros.data.sequences import Sequence
from siam_tracking_ros.trackers import build_tracker, get_spec, list_trackers
from siam_tracking_ros.weights.io import WeightsError, save_weights

VARIANTS = ["cfnet", "dsiam", "rasnet", "sa_siam", "siam_bm"]
#: a smaller search crop (5x5 responses) keeps each test within a few seconds on 2 shared cores
SMALL = {"instance_size": 159}


def _build(name: str, **overrides: object):
    torch.manual_seed(0)
    return build_tracker(name, weights="random", device="cpu", **{**SMALL, **overrides})


@pytest.mark.parametrize("name", VARIANTS)
def test_registered_with_own_config(name: str) -> None:
    assert name in list_trackers()
    spec = get_spec(name)
    assert dataclasses.is_dataclass(spec.config_cls)
    assert spec.config_cls.__name__ != "SiamFCConfig"
    assert spec.description


@pytest.mark.parametrize("name", VARIANTS)
def test_packaged_weights_load_their_stored_config_or_fail_clearly(name: str) -> None:
    """A variant with a packaged file builds its trained network (the file's config: the
    ImageNet MobileNetV2 backbone); one without fails with the reason, naming siam-train."""
    if get_spec(name).default_weights.exists():
        assert build_tracker(name, device="cpu").config.backbone == "mobilenetv2"
    else:
        with pytest.raises(WeightsError, match="siam-train"):
            build_tracker(name, device="cpu")


@pytest.mark.parametrize("name", VARIANTS)
def test_network_contract_and_determinism(name: str) -> None:
    tracker = _build(name)
    net = tracker.model.eval()
    assert net.head_kind == "fc"
    size = tracker.config.score_size
    g = torch.Generator().manual_seed(1)
    z = torch.rand(2, 3, 127, 127, generator=g) * 255
    x = torch.rand(2, 3, 159, 159, generator=g) * 255
    with torch.no_grad():
        first = net(z, x)["score"]
        again = net.search(net.template(z), x)["score"]
    assert first.shape == (2, 1, size, size)
    assert torch.isfinite(first).all()
    torch.testing.assert_close(first, again, rtol=0, atol=0)


@pytest.mark.parametrize("name", VARIANTS)
def test_tracks_a_real_frame(name: str, crossing: Sequence) -> None:
    tracker = _build(name, score_temperature=100.0)  # keep untrained logits off the sigmoid's tails
    frame0, frame1 = crossing.frame(0), crossing.frame(1)
    tracker.init(frame0, crossing.boxes[0])
    result = tracker.track(frame1)
    height, width = frame1.shape[:2]
    x, y, w, h = result.box
    assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= width and y + h <= height
    # the score is the (calibrated) logistic-loss logit of the peak, as in SiamFC: trained weights
    # make it fall when the target is gone
    raw, cfg = result.extra["raw_score"], tracker.config
    logit = (raw - cfg.score_bias) / cfg.score_temperature
    assert result.score == pytest.approx(1.0 / (1.0 + np.exp(-logit)))
    assert 0.0 <= result.score <= 1.0
    # a re-init forgets every online state (updated templates, transforms, angle)
    tracker.reset()
    tracker.init(frame0, crossing.boxes[0])
    repeat = tracker.track(frame1)
    np.testing.assert_allclose(repeat.box, result.box, rtol=1e-5)
    assert repeat.extra["raw_score"] == pytest.approx(result.extra["raw_score"], rel=1e-5)


@pytest.mark.parametrize("name", VARIANTS)
def test_project_weights_round_trip(name: str, tmp_path: Path) -> None:
    tracker = _build(name)
    path = save_weights(tmp_path / f"{name}.safetensors", tracker.model.state_dict(), name, tracker.config)
    loaded = build_tracker(name, weights=path, device="cpu")
    assert loaded.config == tracker.config
    for key, value in tracker.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
