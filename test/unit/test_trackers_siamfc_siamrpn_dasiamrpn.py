"""SiamFC / SiamRPN / DaSiamRPN trackers: contract, selection logic against naive references,
distractor-aware re-ranking and local-to-global search (random weights: no accuracy claims)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from siam_tracking_ros.core.geometry import padded_size
from siam_tracking_ros.data.sequences import load_sequence
from siam_tracking_ros.trackers import InvalidBoxError, build_tracker
from siam_tracking_ros.trackers.dasiamrpn import DistractorMemory, rerank, window_norms

# small networks keep the tests fast on 2 CPU cores; the tracking logic is the same
SMALL: dict[str, dict[str, Any]] = {
    "siamfc": {"backbone": "pysot", "width_mult": 0.25},
    "siamrpn": {"width_mult": 0.25, "hidden": 16},
    "dasiamrpn": {"width_mult": 0.25, "hidden": 16, "max_instance_size": 399},
}
NAMES = list(SMALL)


def build(name: str, seed: int = 0, **overrides: Any):
    torch.manual_seed(seed)
    return build_tracker(name, weights="random", device="cpu", **{**SMALL[name], **overrides})


def textured_frame(seed: int = 0, height: int = 120, width: int = 160) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, size=(height // 8, width // 8, 3), dtype=np.uint8)
    return np.kron(frame, np.ones((8, 8, 1), dtype=np.uint8))


@pytest.mark.parametrize("name", NAMES)
def test_track_before_init_raises(name: str) -> None:
    with pytest.raises(RuntimeError, match="before init"):
        build(name).track(textured_frame())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("box", [(10, 10, 0, 20), (10, 10, 20, -1), (math.nan, 1, 5, 5), (500, 500, 10, 10)])
def test_invalid_box_raises(name: str, box: tuple[float, ...]) -> None:
    with pytest.raises(InvalidBoxError):
        build(name).init(textured_frame(), box)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_in_eval_mode(name: str) -> None:
    tracker = build(name)
    frames = [textured_frame(seed) for seed in (1, 2, 3)]
    runs = []
    for _ in range(2):
        tracker.init(frames[0], (60, 40, 30, 24))
        runs.append([tracker.track(frame) for frame in frames[1:]])
        tracker.reset()
    for first, second in zip(*runs, strict=True):
        assert first.box == second.box and first.score == second.score
    assert not tracker.model.training


def assert_valid_result(result: Any, frame: np.ndarray) -> None:
    x, y, w, h = result.box
    height, width = frame.shape[:2]
    assert all(math.isfinite(v) for v in result.box)
    assert x >= 0 and y >= 0 and w >= 0 and h >= 0
    assert x + w <= width + 1e-6 and y + h <= height + 1e-6
    assert 0.0 <= result.score <= 1.0


@pytest.mark.shared_data
@pytest.mark.parametrize("name", NAMES)
def test_smoke_random_weights_on_real_frames(name: str, sequences_dir: Path) -> None:
    """Mechanics only (random weights): results on real frames keep the contract (finite box inside
    the frame, score in [0, 1]); tracking quality is tested where trained weights exist."""
    sequence = load_sequence(sequences_dir / "otb_Crossing")
    tracker = build(name)
    tracker.init(sequence.frame(0), sequence.boxes[0])
    for index in (1, 2):
        frame = sequence.frame(index)
        assert_valid_result(tracker.track(frame), frame)


# --- SiamFC: multi-scale choice and displacement -------------------------------------------------

def gaussian_map(size: int, row: float, col: float, amplitude: float, sigma: float = 6.0) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(size, dtype=torch.float32),
                                torch.arange(size, dtype=torch.float32), indexing="ij")
    return amplitude * torch.exp(-((rows - row) ** 2 + (cols - col) ** 2) / (2 * sigma ** 2))


def test_siamfc_picks_scale_with_penalty() -> None:
    tracker = build("siamfc")
    up = tracker.config.upscale_size
    assert up == 272 and list(tracker.scale_factors) == pytest.approx([1 / 1.0375, 1.0, 1.0375])
    maps = torch.stack([gaussian_map(up, 130, 140, a) for a in (0.5, 0.6, 1.0)])
    assert tracker.locate(maps)[0] == 2  # clearly best larger scale wins
    maps = torch.stack([gaussian_map(up, 130, 140, a) for a in (0.5, 0.99, 1.0)])
    assert tracker.locate(maps)[0] == 1  # 1.0 * 0.9745 < 0.99: the penalty keeps the scale
    scale_id, row, col, peak = tracker.locate(torch.stack([gaussian_map(up, 150, 100, a)
                                                           for a in (0.1, 0.2, 0.3)]))
    assert (scale_id, peak) == (2, pytest.approx(0.3))
    assert abs(row - 150) <= 3 and abs(col - 100) <= 3  # the cosine window pulls slightly inwards


def test_siamfc_move_hand_worked() -> None:
    tracker = build("siamfc")
    frame = textured_frame()
    tracker.init(frame, (60, 40, 30, 20))
    x_sz = tracker.x_sz
    # peak 16 upsampled pixels right of the centre (135.5) at the larger scale
    cx, cy, w, h = tracker.move(2, 135, 151, frame.shape)
    to_image = 8 / 16 * x_sz * 1.0375 / 255
    assert cx == pytest.approx(75 + 15.5 * to_image) and cy == pytest.approx(50 - 0.5 * to_image)
    scale = 1 - 0.59 + 0.59 * 1.0375
    assert (w, h) == (pytest.approx(30 * scale), pytest.approx(20 * scale))
    assert tracker.x_sz == pytest.approx(x_sz * scale)


def test_siamfc_score_is_sigmoid_of_raw_peak() -> None:
    tracker = build("siamfc", score_bias=1.0, score_temperature=2.0)
    assert tracker.presence_score(1.0) == pytest.approx(0.5)
    assert tracker.presence_score(5.0) == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert tracker.presence_score(-1e6) == 0.0 and tracker.presence_score(math.nan) == 0.0


# --- SiamRPN: proposal scoring against a naive loop ----------------------------------------------

def naive_proposals(cls: np.ndarray, loc: np.ndarray, target: tuple[float, float], cfg: Any) -> tuple:
    """pysot-style decoding spelled out per anchor: returns score, boxes, penalty, pscore."""
    k, s = cfg.anchor_num, cfg.score_size
    hann = np.hanning(s)
    score, boxes, penalty, pscore = [], [], [], []
    for a, ratio in enumerate(cfg.anchor_ratios):
        ws = int(math.sqrt(64 / ratio))
        aw, ah = ws * 8, int(ws * ratio) * 8
        for row in range(s):
            for col in range(s):
                ax, ay = (col - s // 2) * 8, (row - s // 2) * 8
                logits = cls[[a, k + a], row, col]
                prob = math.exp(logits[1]) / (math.exp(logits[0]) + math.exp(logits[1]))
                d = loc[[a, k + a, 2 * k + a, 3 * k + a], row, col]
                box = (d[0] * aw + ax, d[1] * ah + ay, math.exp(d[2]) * aw, math.exp(d[3]) * ah)
                s_c = padded_size(box[2], box[3]) / padded_size(*target)
                r_c = (target[0] / target[1]) / (box[2] / box[3])
                pen = math.exp(-(max(r_c, 1 / r_c) * max(s_c, 1 / s_c) - 1) * cfg.penalty_k)
                win = hann[row] * hann[col]
                score.append(prob)
                boxes.append(box)
                penalty.append(pen)
                pscore.append(pen * prob * (1 - cfg.window_influence) + win * cfg.window_influence)
    return np.array(score), np.array(boxes), np.array(penalty), np.array(pscore)


def test_siamrpn_proposals_match_naive_loop() -> None:
    tracker = build("siamrpn")
    frame = textured_frame()
    tracker.init(frame, (60, 40, 30, 20))
    cfg = tracker.config
    g = torch.Generator().manual_seed(5)
    cls = torch.randn(1, 10, 17, 17, generator=g)
    loc = torch.randn(1, 20, 17, 17, generator=g) * 0.3
    scale_z = 1.7
    props = tracker.proposals({"cls": cls, "loc": loc}, scale_z)
    target = (30 * scale_z, 20 * scale_z)
    score, boxes, penalty, pscore = naive_proposals(cls[0].double().numpy(), loc[0].double().numpy(),
                                                    target, cfg)
    np.testing.assert_allclose(props.score, score, rtol=1e-5)
    np.testing.assert_allclose(props.boxes, boxes, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(props.penalty, penalty, rtol=1e-5)
    np.testing.assert_allclose(props.pscore, pscore, rtol=1e-5, atol=1e-7)


def test_siamrpn_update_moves_towards_best_with_lr() -> None:
    tracker = build("siamrpn")
    frame = textured_frame()
    tracker.init(frame, (60, 40, 30, 20))
    cls = torch.full((1, 10, 17, 17), -5.0)
    cls[0, 5 + 2, 8, 10] = 5.0  # ratio-1 anchor, two cells right of centre: foreground
    loc = torch.zeros(1, 20, 17, 17)
    props = tracker.proposals({"cls": cls, "loc": loc}, 2.0)
    best = int(np.argmax(props.pscore))
    assert best == 2 * 17 * 17 + 8 * 17 + 10
    cx, cy, w, h = tracker.update_state(props, best, 2.0, frame.shape)
    lr = props.penalty[best] * props.score[best] * tracker.config.lr
    assert cx == pytest.approx(75 + 16 / 2.0) and cy == pytest.approx(50)
    assert w == pytest.approx(30 * (1 - lr) + 32 * lr) and h == pytest.approx(20 * (1 - lr) + 32 * lr)


# --- DaSiamRPN: distractor-aware re-ranking ------------------------------------------------------

def naive_distractor_similarity(x_f: torch.Tensor, distractors: list[tuple[torch.Tensor, float]],
                                height: int, width: int) -> np.ndarray:
    """sum_i a_i cos(d_i, window(p)) / sum_i a_i for every window p, by explicit loops."""
    size = x_f.shape[-1] - width + 1
    out = np.zeros((size, size))
    total = sum(a for _, a in distractors)
    for row in range(size):
        for col in range(size):
            window = x_f[0, :, row:row + height, col:col + width].flatten().double()
            acc = 0.0
            for d, a in distractors:
                d = d.flatten().double()
                acc += a * float(torch.dot(d, window) / (d.norm() * window.norm()))
            out[row, col] = acc / total
    return out


def test_distractor_similarity_batch_matches_loop() -> None:
    g = torch.Generator().manual_seed(7)
    x_f = torch.randn(1, 6, 9, 9, generator=g)
    h = w = 3
    memory = DistractorMemory((1, 6, h, w), torch.device("cpu"), learning_rate=0.4)
    first = torch.randn(2, 6, h, w, generator=g)
    second = torch.randn(1, 6, h, w, generator=g)
    memory.add(first, torch.tensor([0.9, 0.6]))
    memory.add(second, torch.tensor([0.8]))
    # first frame's distractors decay by (1 - lr) after the second add
    distractors = [(first[0], 0.4 * 0.6 * 0.9), (first[1], 0.4 * 0.6 * 0.6), (second[0], 0.4 * 0.8)]
    expected = naive_distractor_similarity(x_f, distractors, h, w)
    batch = memory.similarity(x_f, window_norms(x_f, h, w)).double().numpy()
    np.testing.assert_allclose(batch, expected, rtol=1e-4, atol=1e-6)


def test_rerank_matches_naive_objective() -> None:
    rng = np.random.default_rng(0)
    cells_per_map, anchors = 25, 3
    pscore = rng.random(anchors * cells_per_map)
    similarity = rng.uniform(-1, 1, cells_per_map)
    candidates = np.array([4, 30, 57, 70])
    cells = np.arange(pscore.size) % cells_per_map
    best = rerank(pscore, candidates, similarity, cells, 0.5)
    objective = {int(c): pscore[c] - 0.5 * similarity[c % cells_per_map] for c in candidates}
    assert best == max(objective, key=objective.get)
    # a candidate that looks like the remembered distractors loses its lead
    pscore[candidates] = [0.9, 0.8, 0.1, 0.1]
    similarity[:] = 0.0
    similarity[4] = 1.0
    assert rerank(pscore, candidates, similarity, cells, 0.5) == 30
    assert rerank(pscore, candidates, similarity, cells, 0.0) == 4


def test_dasiamrpn_collects_distractors_and_reranks() -> None:
    tracker = build("dasiamrpn", distractor_threshold=0.0, num_candidates=16)
    frames = [textured_frame(seed) for seed in range(4)]
    tracker.init(frames[0], (60, 40, 30, 24))
    assert tracker.memory is not None and tracker.memory.empty
    for frame in frames[1:]:
        assert_valid_result(tracker.track(frame), frame)
    assert not tracker.memory.empty and torch.isfinite(tracker.memory.kernel).all()
    tracker.reset()
    assert tracker.memory.empty


# --- DaSiamRPN: local-to-global search -----------------------------------------------------------

def _never_confident(tracker) -> None:
    """Thresholds above 1 (out of the range a user may set, so set on the built tracker): every
    frame counts as lost and nothing is ever "found"."""
    tracker.config.lost_threshold = tracker.config.found_threshold = 1.1


def test_global_search_grows_and_resets() -> None:
    tracker = build("dasiamrpn", long_term=True, search_step=64, max_instance_size=399, adaptive=False)
    _never_confident(tracker)
    frames = [textured_frame(seed) for seed in range(5)]
    tracker.init(frames[0], (60, 40, 30, 24))
    first = tracker.track(frames[1])
    assert tracker.lost and tracker.instance_size == 335
    frozen = first.box
    sizes = []
    for frame in frames[2:]:
        result = tracker.track(frame)
        sizes.append(tracker.instance_size)
        assert result.box == frozen and result.extra["lost"]
    assert sizes == [399, 399, 399]
    tracker.enable_global_search(False)
    assert not tracker.lost and tracker.instance_size == 271
    tracker.track(frames[1])
    assert not tracker.lost and tracker.instance_size == 271


def test_global_search_found_returns_to_local() -> None:
    tracker = build("dasiamrpn", long_term=True, adaptive=False)
    _never_confident(tracker)
    frame = textured_frame(1)
    tracker.init(frame, (60, 40, 30, 24))
    frozen = tracker.track(frame)
    assert tracker.lost and tracker.instance_size == 335
    # now any proposal counts as found and nothing as lost
    tracker.config.found_threshold, tracker.config.lost_threshold = 0.0, -1.0
    result = tracker.track(frame)
    assert not tracker.lost and not result.extra["lost"] and tracker.instance_size == 271
    assert result.box != frozen.box  # the state jumped to the found proposal


def test_global_search_off_by_default_and_switchable() -> None:
    tracker = build("dasiamrpn", adaptive=False)
    _never_confident(tracker)
    frame = textured_frame(2)
    tracker.init(frame, (60, 40, 30, 24))
    tracker.track(frame)
    assert not tracker.lost and tracker.instance_size == 271
    tracker.enable_global_search(True)  # e.g. the node reports LOST: search wider right away
    assert tracker.lost and tracker.instance_size == 335
    tracker.track(frame)
    assert tracker.lost and tracker.instance_size == 399


def test_adaptive_search_size_for_small_targets() -> None:
    tracker = build("dasiamrpn")
    frame = textured_frame(height=480, width=640)
    tracker.init(frame, (300, 200, 10, 10))  # 100 / 307200 < 0.004
    assert tracker.instance_size == 287
    tracker.init(frame, (300, 200, 100, 100))
    assert tracker.instance_size == 271
