"""SiamRPN++ and SiamMask trackers: registry, configs, tracking logic, masks on real frames.

Untrained (random) networks: these tests check the mechanics (state, geometry, output types),
not accuracy. ResNet-50 runs are expensive on CPU, so most use a 159 search region (13x13 score
map); the real-frame tests use the default 255.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from siam_tracking_ros.core.result import TrackResult
from siam_tracking_ros.data.sequences import load_sequence
from siam_tracking_ros.trackers import build_tracker, get_spec, list_trackers
from siam_tracking_ros.trackers.siammask import SiamMaskNet, SiamMaskTracker, paste_mask
from siam_tracking_ros.trackers.siamrpnpp import SiamRPNppConfig, SiamRPNppNet


def _build(name: str, **overrides):
    torch.manual_seed(0)
    return build_tracker(name, weights="random", device="cpu", **overrides)


def _synthetic_frames() -> tuple[np.ndarray, np.ndarray, tuple[float, float, float, float]]:
    rng = np.random.default_rng(0)
    first = rng.integers(0, 80, size=(200, 260, 3), dtype=np.uint8)
    first[70:130, 90:150] = (40, 180, 230)
    second = np.roll(first, (4, 6), axis=(0, 1))
    return first, second, (90.0, 70.0, 60.0, 60.0)


def _assert_valid(result: TrackResult, frame: np.ndarray) -> None:
    x, y, w, h = result.box
    height, width = frame.shape[:2]
    assert all(math.isfinite(v) for v in result.box)
    assert x >= 0 and y >= 0 and w > 0 and h > 0
    assert x + w <= width + 1e-6 and y + h <= height + 1e-6
    assert 0.0 <= result.score <= 1.0


# --- registry and configs ----------------------------------------------------------------------

def test_registered_with_contract_attributes() -> None:
    assert {"siamrpnpp", "siammask"} <= set(list_trackers())
    assert get_spec("siamrpnpp").importer is not None and get_spec("siammask").importer is not None
    assert SiamRPNppNet.head_kind == "rpn" and SiamMaskNet.head_kind == "mask"
    assert SiamMaskTracker.produces_mask


def test_config_takes_pysot_values_of_the_chosen_backbone() -> None:
    resnet = SiamRPNppConfig()
    assert (resnet.penalty_k, resnet.window_influence, resnet.lr) == (0.05, 0.42, 0.38)
    assert resnet.instance_size == 255 and resnet.rpn_weighted is True
    mobile = SiamRPNppConfig(backbone="mobilenetv2")
    assert (mobile.penalty_k, mobile.window_influence, mobile.lr) == (0.04, 0.4, 0.5)
    assert mobile.rpn_weighted is False
    alex = SiamRPNppConfig(backbone="alexnet", lr=0.25)
    assert (alex.instance_size, alex.base_size, alex.penalty_k, alex.lr) == (287, 0, 0.16, 0.25)
    with pytest.raises(ValueError, match="backbone"):
        SiamRPNppConfig(backbone="vgg")


@pytest.mark.parametrize("backbone", ["resnet50", "mobilenetv2", "alexnet"])
def test_score_map_matches_anchor_grid(backbone: str) -> None:
    with torch.device("meta"):
        net = SiamRPNppNet(backbone)
    cfg = SiamRPNppConfig(backbone=backbone)
    z = torch.empty(1, 3, cfg.exemplar_size, cfg.exemplar_size, device="meta")
    x = torch.empty(1, 3, cfg.instance_size, cfg.instance_size, device="meta")
    out = net(z, x)
    size = (cfg.instance_size - cfg.exemplar_size) // cfg.anchor_stride + 1 + cfg.base_size
    assert tuple(out["cls"].shape) == (1, 2 * cfg.anchor_num, size, size)
    assert tuple(out["loc"].shape) == (1, 4 * cfg.anchor_num, size, size)


# --- tracking mechanics --------------------------------------------------------------------------

def test_track_before_init_raises() -> None:
    tracker = _build("siamrpnpp", backbone="mobilenetv2")
    with pytest.raises(RuntimeError, match="before init"):
        tracker.track(np.zeros((64, 64, 3), dtype=np.uint8))


@pytest.mark.parametrize(("name", "overrides"), [
    ("siamrpnpp", {"backbone": "mobilenetv2"}),
    ("siammask", {"instance_size": 159}),
    ("siammask", {"instance_size": 159, "refine": False}),  # coarse 63x63 mask, upsampled
])
def test_deterministic_in_eval_mode(name: str, overrides: dict) -> None:
    first, second, box = _synthetic_frames()
    tracker = _build(name, **overrides)
    results = []
    for _ in range(2):
        tracker.init(first, box)
        results.append(tracker.track(second))
        tracker.reset()
    assert not tracker.model.training
    assert results[0].box == results[1].box and results[0].score == results[1].score
    if name == "siammask":
        assert results[0].mask.shape == second.shape[:2]
        assert np.array_equal(results[0].mask, results[1].mask)
        assert np.array_equal(results[0].polygon, results[1].polygon)
    _assert_valid(results[0], second)


def _pysot_reference_scores(cls: torch.Tensor, loc: torch.Tensor, size: tuple[float, float],
                            scale_z: float, penalty_k: float, influence: float
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pysot SiamRPNTracker scoring written out cell by cell: ``(score, boxes, pscore)``."""
    anchors_per_cell, score_size = cls.shape[1] // 2, cls.shape[-1]
    hann = np.hanning(score_size)

    def sz(w: float, h: float) -> float:
        pad = (w + h) / 2
        return math.sqrt((w + pad) * (h + pad))

    score, boxes, pscore = [], [], []
    target = (size[0] * scale_z, size[1] * scale_z)
    for k, ratio in enumerate((0.33, 0.5, 1.0, 2.0, 3.0)):
        ws = int(math.sqrt(64 / ratio))
        aw, ah = ws * 8, int(ws * ratio) * 8
        for row in range(score_size):
            for col in range(score_size):
                bg, fg = float(cls[0, k, row, col]), float(cls[0, anchors_per_cell + k, row, col])
                prob = math.exp(fg) / (math.exp(fg) + math.exp(bg))
                dx, dy, dw, dh = (float(loc[0, c * anchors_per_cell + k, row, col]) for c in range(4))
                ax, ay = (col - score_size // 2) * 8, (row - score_size // 2) * 8
                box = (dx * aw + ax, dy * ah + ay, math.exp(dw) * aw, math.exp(dh) * ah)
                s_c = sz(box[2], box[3]) / sz(*target)
                r_c = (size[0] / size[1]) / (box[2] / box[3])
                penalty = math.exp(-(max(r_c, 1 / r_c) * max(s_c, 1 / s_c) - 1) * penalty_k)
                score.append(prob)
                boxes.append(box)
                pscore.append(penalty * prob * (1 - influence) + hann[row] * hann[col] * influence)
    return np.array(score), np.array(boxes), np.array(pscore)


def test_proposal_scoring_matches_pysot_formulas() -> None:
    tracker = _build("siamrpnpp", backbone="mobilenetv2")
    tracker.size = np.array([40.0, 20.0])
    generator = torch.Generator().manual_seed(9)
    cls = torch.randn(1, 10, 25, 25, generator=generator)
    loc = torch.randn(1, 20, 25, 25, generator=generator) * 0.3
    cls[0, 5 + 2, 3, 9] = 9.0  # anchor 2 (ratio 1) at row 3, col 9 is surely foreground
    props = tracker.proposals({"cls": cls, "loc": loc}, 1.7, instance_size=255)
    score, boxes, pscore = props.score, props.boxes, props.pscore
    ref_score, ref_boxes, ref_pscore = _pysot_reference_scores(cls, loc, (40.0, 20.0), 1.7, 0.04, 0.4)
    np.testing.assert_allclose(score, ref_score, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(boxes, ref_boxes, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(pscore, ref_pscore, rtol=1e-5, atol=1e-6)
    assert score[2 * 625 + 3 * 25 + 9] > 0.99


def test_long_term_mode_widens_the_search_while_lost() -> None:
    first, second, box = _synthetic_frames()
    # never confident; a smaller lost-search region than pysot's 831 keeps the test cheap
    tracker = _build("siamrpnpp", backbone="alexnet", lost_instance_size=351)
    tracker.config.confidence_low = 1.01  # above the settable range: never confident
    assert SiamRPNppConfig().lost_instance_size == 831
    tracker.init(first, box)
    assert tracker.track(second).extra["instance_size"] == 287  # long-term mode is off
    tracker.enable_global_search(True)
    center = tracker.center.copy()
    assert tracker.track(second).extra["lost"]
    assert np.array_equal(tracker.center, center)  # low confidence: the state stays put
    result = tracker.track(second)
    assert result.extra["instance_size"] == 351
    _assert_valid(result, second)
    tracker.enable_global_search(False)
    assert tracker.track(second).extra["instance_size"] == 287


def test_siammask_has_no_long_term_mode() -> None:
    tracker = _build("siammask", instance_size=159)
    with pytest.raises(ValueError, match="long-term"):
        tracker.enable_global_search(True)


def test_paste_mask_puts_the_crop_where_its_box_is() -> None:
    crop = np.ones((127, 127), dtype=np.float32)
    sub_box = (40.0, 30.0, 63.5, 63.5)  # the 127 crop covers 63.5 source pixels from (40, 30)
    pasted = paste_mask(crop, sub_box, (120, 160, 3))
    assert pasted.shape == (120, 160)
    inside = np.argwhere(pasted > 0.5)
    assert inside[:, 1].min() == 40 and inside[:, 0].min() == 30
    assert abs(inside[:, 1].max() - (40 + 63.5 - 1)) <= 1 and abs(inside[:, 0].max() - (30 + 63.5 - 1)) <= 1


# --- real frames -------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.shared_data
def test_siamrpnpp_runs_on_a_real_frame(sequences_dir: Path) -> None:
    sequence = load_sequence(sequences_dir / "otb_Crossing")
    tracker = _build("siamrpnpp")
    tracker.init(sequence.frame(0), sequence.boxes[0])
    frame = sequence.frame(1)
    result = tracker.track(frame)
    _assert_valid(result, frame)
    assert result.mask is None and result.polygon is None


@pytest.mark.slow
@pytest.mark.shared_data
def test_siammask_returns_a_source_sized_mask_and_polygon(sequences_dir: Path) -> None:
    sequence = load_sequence(sequences_dir / "davis_tennis_propainter")
    tracker = _build("siammask")
    tracker.init(sequence.frame(0), sequence.boxes[0])
    frame = sequence.frame(1)
    result = tracker.track(frame)
    _assert_valid(result, frame)
    assert result.mask is not None and result.mask.shape == frame.shape[:2]
    assert result.mask.dtype == np.uint8 and set(np.unique(result.mask)) <= {0, 255}
    assert result.polygon is not None and result.polygon.shape == (4, 2)
    assert np.isfinite(result.polygon).all()
    assert "segmentation" in result.as_dict()
