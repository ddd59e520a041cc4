"""C-RPN mechanisms: feature transfer block, negative-anchor filtering, anchor refinement."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from siam_tracking_ros.core.anchors import (
    MAX_LOG_SCALE,
    decode_deltas,
    flatten_loc,
    foreground_probability,
    generate_anchors,
)
from siam_tracking_ros.models.heads.cascade_rpn import (
    CascadeRPN,
    cascade_proposals,
    filter_negative_anchors,
    refine_anchors,
)
from siam_tracking_ros.models.heads.rpn import UpChannelRPN
from siam_tracking_ros.models.necks.feature_transfer import FeatureTransferBlock

K, S = 5, 17


def _cls_with_background_probability(prob_bg: torch.Tensor) -> torch.Tensor:
    """cls logits ``(1, 2K, S, S)`` whose softmax background probability is ``prob_bg (K*S*S,)``."""
    logit_bg = torch.log(prob_bg)
    logit_fg = torch.log1p(-prob_bg)
    return torch.cat([logit_bg, logit_fg]).reshape(1, 2 * K, S, S)


def test_ftb_is_deconv_sum_relu() -> None:
    torch.manual_seed(0)
    ftb = FeatureTransferBlock(16, 24)
    high, low = torch.randn(2, 16, 22, 22), torch.randn(2, 24, 24, 24)
    out = ftb(high, low)
    manual = F.relu(F.conv_transpose2d(high, ftb.deconv.weight, ftb.deconv.bias) + low)
    assert out.shape == (2, 24, 24, 24)
    torch.testing.assert_close(out, manual)
    resized = ftb(high, low, out_size=(22, 22))
    torch.testing.assert_close(resized, F.interpolate(manual, size=(22, 22), mode="bilinear"))
    # sizes that the deconvolution does not hit exactly are interpolated onto the lower level
    odd = ftb(torch.randn(1, 16, 5, 5), torch.randn(1, 24, 9, 9))
    assert odd.shape == (1, 24, 9, 9) and bool((odd >= 0).all())


def test_filter_keeps_exactly_the_anchors_under_theta() -> None:
    torch.manual_seed(1)
    prob_bg = torch.rand(K * S * S) * 0.1 + 0.9  # around theta
    keep = torch.ones(K * S * S, dtype=torch.bool)
    keep[:7] = False  # already filtered earlier: stays filtered
    kept = filter_negative_anchors(keep, _cls_with_background_probability(prob_bg), theta=0.95)
    expected = keep & (prob_bg <= 0.95)
    assert 0 < int(expected.sum()) < K * S * S
    assert torch.equal(kept, expected)
    everything_negative = filter_negative_anchors(keep, _cls_with_background_probability(
        torch.full((K * S * S,), 0.999)), theta=0.95)
    assert torch.equal(everything_negative, keep)  # nothing would be left: keep the previous set


def test_each_stage_refines_the_previous_stages_boxes() -> None:
    torch.manual_seed(2)
    anchors = torch.from_numpy(generate_anchors(S))
    cls = [torch.randn(1, 2 * K, S, S) for _ in range(3)]
    loc = [torch.randn(1, 4 * K, S, S) * 0.1 for _ in range(3)]
    out = cascade_proposals(cls, loc, anchors, theta=0.6)
    second = decode_deltas(flatten_loc(loc[0])[0], anchors)
    third = decode_deltas(flatten_loc(loc[1])[0], second)
    torch.testing.assert_close(out.stage_anchors[1], second)
    torch.testing.assert_close(out.stage_anchors[2], third)
    torch.testing.assert_close(out.boxes, decode_deltas(flatten_loc(loc[2])[0], third))
    torch.testing.assert_close(refine_anchors(anchors, loc[0]), second)
    expected_keep = filter_negative_anchors(filter_negative_anchors(
        torch.ones_like(out.keep), cls[0], 0.6), cls[1], 0.6)
    assert torch.equal(out.keep, expected_keep)
    assert bool((out.scores[~out.keep] == 0).all())
    torch.testing.assert_close(out.scores[out.keep], foreground_probability(cls[2])[0][out.keep])


def test_one_stage_cascade_equals_a_plain_rpn() -> None:
    torch.manual_seed(3)
    cascade = CascadeRPN(level_channels=(32,), anchor_num=K, hidden=8).eval()
    plain = UpChannelRPN(K, 32, 8).eval()
    plain.load_state_dict(cascade.rpns[0].state_dict())
    z, x = torch.randn(1, 32, 6, 6), torch.randn(1, 32, 22, 22)
    with torch.no_grad():
        out = cascade(z_levels=[z], x_levels=[x])
        cls, loc = plain(z, x)
    assert len(out["cls_stages"]) == 1
    torch.testing.assert_close(out["cls_stages"][0], cls)
    torch.testing.assert_close(out["loc_stages"][0], loc)
    anchors = torch.from_numpy(generate_anchors(S))
    proposals = cascade_proposals(out["cls_stages"], out["loc_stages"], anchors)
    # the plain SiamRPN decode (log-scales clamped as the siamrpn tracker does)
    torch.testing.assert_close(proposals.boxes, decode_deltas(flatten_loc(loc)[0], anchors, MAX_LOG_SCALE))
    torch.testing.assert_close(proposals.scores, foreground_probability(cls)[0])


def test_three_stage_cascade_shapes() -> None:
    torch.manual_seed(4)
    cascade = CascadeRPN(level_channels=(16, 24, 24), anchor_num=K, hidden=8).eval()
    z = [torch.randn(2, 16, 6, 6), torch.randn(2, 24, 8, 8), torch.randn(2, 24, 10, 10)]
    x = [torch.randn(2, 16, 22, 22), torch.randn(2, 24, 24, 24), torch.randn(2, 24, 26, 26)]
    with torch.no_grad():
        out = cascade(z, x)
    assert [tuple(c.shape) for c in out["cls_stages"]] == [(2, 2 * K, S, S)] * 3
    assert [tuple(c.shape) for c in out["loc_stages"]] == [(2, 4 * K, S, S)] * 3
