"""trackers/decision.py: the one decision loop and its hooks, against reference paths (issue 11)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from siam_tracking_ros.data.sequences import Sequence
from siam_tracking_ros.trackers.decision import rank_proposals, smoothed_state
from siam_tracking_ros.trackers.registry import build_tracker
from siam_tracking_ros.trackers.siamrpn import SiamRPNTracker

FRAMES = 8


def _boxes(tracker, sequence: Sequence) -> np.ndarray:
    tracker.init(sequence.frame(0), sequence.boxes[0])
    return np.array([tracker.track(sequence.frame(i)).box for i in range(1, FRAMES + 1)])


@pytest.mark.parametrize(("name", "overrides"), [
    ("dasiamrpn", {"width_mult": 0.25, "hidden": 16, "distractor_aware": False, "adaptive": False}),
    ("siamrpnpp", {"backbone": "alexnet", "instance_size": 255}),
    ("siammask", {"instance_size": 159}),
])
def test_hooks_at_rest_give_the_plain_rpn_loop(name: str, overrides: dict, crossing: Sequence) -> None:
    """With its own mechanisms off, a variant tracks exactly as plain SiamRPN on the same network."""
    torch.manual_seed(0)
    variant = build_tracker(name, weights="random", device="cpu", **overrides)
    reference = SiamRPNTracker(variant.model, variant.config, torch.device("cpu"))
    np.testing.assert_allclose(_boxes(variant, crossing), _boxes(reference, crossing), rtol=0, atol=1e-9)


def test_rank_proposals_is_penalised_and_windowed() -> None:
    score = np.array([0.9, 0.5, 0.8])
    boxes = np.array([[0, 0, 10, 10], [0, 0, 20, 20], [0, 0, 10, 30]], dtype=np.float64)
    window = np.array([0.1, 1.0, 0.1])
    props = rank_proposals(score, boxes, np.array([10.0, 10.0]), window, 0.2, 0.5,
                           valid=np.array([True, True, False]))
    assert props.penalty[0] == pytest.approx(1.0)  # same size and ratio: no penalty
    assert props.penalty[1] < 1.0
    assert props.pscore[0] == pytest.approx(0.9 * 0.5 + 0.1 * 0.5)
    assert props.pscore[2] == -1.0


def test_smoothed_state_moves_the_centre_and_blends_the_size() -> None:
    box = np.array([1.0, -2.0, 8.0, 8.0])
    center, size = smoothed_state(np.array([10.0, 20.0]), np.array([4.0, 8.0]), box, 0.25)
    np.testing.assert_allclose(center, [11.0, 18.0])
    np.testing.assert_allclose(size, [5.0, 8.0])
