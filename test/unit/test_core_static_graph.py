"""The static-shape (CUDA-graph) search path: flatten/rebuild, per-signature capture, and every
variant giving the same results through it as eagerly (emulated on CPU; real graphs on CUDA)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from siam_tracking_ros.core.static_graph import StaticGraph, flatten_tensors, rebuild
from siam_tracking_ros.trackers.registry import build_tracker, list_trackers


def test_flatten_and_rebuild_round_trip() -> None:
    a, b, c = torch.zeros(2), torch.ones(3, 1), torch.arange(4.0)
    tree = ((a, [b, {"k": c, "flag": True}]), {"return_features": False})
    tensors, spec = flatten_tensors(tree)
    assert [t.shape for t in tensors] == [a.shape, b.shape, c.shape]
    again = rebuild(spec, tensors)
    assert again[0][0] is a and again[0][1][1]["k"] is c and again[0][1][1]["flag"] is True
    assert again[1] == {"return_features": False}
    assert flatten_tensors(((torch.zeros(2, 2),), {}))[1] != flatten_tensors(((torch.zeros(2),), {}))[1]


def test_one_capture_per_signature_and_outputs_follow_inputs() -> None:
    calls = []

    def double(x: torch.Tensor, scale: float = 2.0) -> dict[str, torch.Tensor]:
        calls.append(x.shape)
        return {"y": x * scale}

    graphed = StaticGraph(double, emulate=True)
    first = graphed(torch.tensor([1.0, 2.0]))["y"].clone()
    second = graphed(torch.tensor([3.0, 4.0]))["y"]
    assert torch.equal(first, torch.tensor([2.0, 4.0])) and torch.equal(second, torch.tensor([6.0, 8.0]))
    graphed(torch.ones(3))
    graphed(torch.ones(3), scale=3.0)  # a different constant is a different graph
    assert graphed.captured == 3 and graphed.replays == 4


def test_disabled_or_cpu_without_emulation_is_a_plain_call() -> None:
    graphed = StaticGraph(lambda x: x + 1, enabled=True)
    assert torch.equal(graphed(torch.zeros(2)), torch.ones(2)) and graphed.captured == 0


def _run(tracker, sequence, frames: int) -> list[tuple]:
    tracker.init(sequence.frame(0), sequence.boxes[0])
    out = []
    for index in range(1, frames):
        result = tracker.track(sequence.frame(index))
        out.append((np.asarray(result.box), result.score))
    return out


@pytest.mark.parametrize("variant", sorted(list_trackers()))
def test_every_variant_tracks_the_same_through_the_static_path(variant: str, crossing) -> None:
    torch.manual_seed(0)
    eager = build_tracker(variant, weights="random", device="cpu")
    graphed = build_tracker(variant, weights="random", device="cpu")
    graphed.model.load_state_dict(eager.model.state_dict())
    graphed.use_cuda_graphs(emulate=True)
    expected, got = _run(eager, crossing, 4), _run(graphed, crossing, 4)
    for (box_a, score_a), (box_b, score_b) in zip(expected, got, strict=True):
        np.testing.assert_allclose(box_a, box_b, rtol=1e-5, atol=1e-4)
        assert score_a == pytest.approx(score_b, abs=1e-6)
    if graphed.supports_cuda_graphs:
        assert graphed.search_pass.replays == 3
    else:
        assert graphed.search_pass.replays == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("variant", ["nanotrack", "siamfc", "siamrpn", "siamrpnpp", "siammask"])
def test_cuda_graph_replay_matches_eager_on_cuda(variant: str, crossing) -> None:
    torch.manual_seed(0)
    eager = build_tracker(variant, weights="random", device="cuda")
    graphed = build_tracker(variant, weights="random", device="cuda")
    graphed.model.load_state_dict(eager.model.state_dict())
    graphed.use_cuda_graphs()
    expected, got = _run(eager, crossing, 6), _run(graphed, crossing, 6)
    for (box_a, _), (box_b, _) in zip(expected, got, strict=True):
        np.testing.assert_allclose(box_a, box_b, rtol=1e-3, atol=1e-2)
    assert graphed.search_pass.captured >= 1 and graphed.search_pass.replays == 5
