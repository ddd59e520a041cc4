"""C-RPN: cascaded Siamese RPN stages from deep to shallow features.

Stage 1 is a SiamRPN up-channel head on the deepest feature. Stage ``l > 1`` sees the feature
``FTB(Φ_{l-1}, ψ_l)`` (see :mod:`~siam_tracking_ros.models.necks.feature_transfer`) and refines
the boxes regressed by stage ``l - 1``: its anchors are ``decode(anchors_{l-1}, deltas_{l-1})``.
Anchors whose previous-stage background probability exceeds ``θ`` (paper: 0.95) are easy
negatives and are dropped from all later stages. Every stage's feature is interpolated to the
first stage's size, so all stages share one ``K x S x S`` proposal numbering.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from siam_tracking_ros.core.anchors import MAX_LOG_SCALE, decode_deltas, flatten_cls, flatten_loc
from siam_tracking_ros.models.heads.rpn import DepthwiseRPN, OutputScaler, RPNOutput, UpChannelRPN
from siam_tracking_ros.models.necks.feature_transfer import FeatureTransferBlock, resize_to

#: the RPN heads a cascade stage may use, built as ``(anchor_num, in_channels, hidden)``
STAGE_RPNS = {"upchannel": UpChannelRPN, "depthwise": DepthwiseRPN}


class CascadeRPN(nn.Module):
    """``len(level_channels)`` RPN stages chained by feature transfer blocks.

    Args:
        level_channels: channels of the backbone levels, deepest first (AlexNet: conv5, conv4, conv3).
        anchor_num: anchors per position.
        hidden: channels of each stage's correlation kernels.
        rpn: the stages' RPN head, ``upchannel`` (the paper's) or ``depthwise``.
        ftb_kernel: the FTB deconvolution kernel (3: AlexNet's levels grow by 2; 1: levels of one
            size, e.g. MobileNetV2's two stride-16 maps).
    """

    def __init__(self, level_channels: Sequence[int] = (256, 384, 384), anchor_num: int = 5,
                 hidden: int = 256, rpn: str = "upchannel", ftb_kernel: int = 3) -> None:
        super().__init__()
        if rpn not in STAGE_RPNS:
            raise ValueError(f"cascade_rpn: unknown stage RPN '{rpn}' ({'|'.join(STAGE_RPNS)})")
        self.stages = len(level_channels)
        self.anchor_num = anchor_num
        self.ftbs = nn.ModuleList(FeatureTransferBlock(level_channels[i - 1], level_channels[i], ftb_kernel)
                                  for i in range(1, self.stages))
        self.rpns = nn.ModuleList(STAGE_RPNS[rpn](anchor_num, c, hidden) for c in level_channels)

    def stage_features(self, levels: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per-stage features ``[ψ_1, FTB(Φ_1, ψ_2), ...]`` resized to the first level's size."""
        size = tuple(levels[0].shape[-2:])
        features = [levels[0]]
        for index, ftb in enumerate(self.ftbs, start=1):
            features.append(ftb(features[-1], levels[index]))
        return [resize_to(f, size) for f in features]

    def template(self, z_levels: Sequence[torch.Tensor]) -> list[RPNOutput]:
        """Correlation kernels of every stage (computed once per target)."""
        return [rpn.template(f) for rpn, f in zip(self.rpns, self.stage_features(z_levels), strict=True)]

    def search(self, kernels: Sequence[RPNOutput], x_levels: Sequence[torch.Tensor]) -> dict[str, list]:
        """``{"cls_stages", "loc_stages"}``: per stage ``(B, 2K, S, S)`` and ``(B, 4K, S, S)``."""
        outputs = [rpn.search(k, f) for rpn, k, f
                   in zip(self.rpns, kernels, self.stage_features(x_levels), strict=True)]
        return {"cls_stages": [o[0] for o in outputs], "loc_stages": [o[1] for o in outputs]}

    def forward(self, z_levels: Sequence[torch.Tensor], x_levels: Sequence[torch.Tensor]) -> dict[str, list]:
        return self.search(self.template(z_levels), x_levels)

    def output_scalers(self) -> list[OutputScaler]:
        """Per stage, the layers scaling its ``cls`` / ``loc`` maps (those of its RPN head)."""
        scalers: list[OutputScaler] = []
        for index, rpn in enumerate(self.rpns):
            scalers += [(f"{name}_stages", index, layers) for name, _, layers in rpn.output_scalers()]
        return scalers


def background_probability(cls: torch.Tensor) -> torch.Tensor:
    """Softmax background probability per proposal of one image, ``(K*S*S,)``."""
    return torch.softmax(flatten_cls(cls)[0], dim=-1)[:, 0]


def filter_negative_anchors(keep: torch.Tensor, cls: torch.Tensor, theta: float) -> torch.Tensor:
    """Drop the anchors this stage calls background with probability above ``theta``.

    If that would drop every anchor, ``keep`` is returned unchanged (nothing is left to refine).
    """
    kept = keep & (background_probability(cls) <= theta)
    return kept if bool(kept.any()) else keep


def refine_anchors(anchors: torch.Tensor, loc: torch.Tensor) -> torch.Tensor:
    """The next stage's anchors: this stage's boxes, ``decode(anchors, deltas)``.

    Log-scale deltas are clamped at ``MAX_LOG_SCALE`` so that sizes stay finite.
    """
    return decode_deltas(flatten_loc(loc)[0], anchors, MAX_LOG_SCALE)


@dataclass
class CascadeProposals:
    """Outcome of a cascade for one image: boxes (cxcywh), scores and the surviving anchors."""

    boxes: torch.Tensor
    scores: torch.Tensor
    keep: torch.Tensor
    stage_anchors: list[torch.Tensor]


def cascade_proposals(cls_stages: Sequence[torch.Tensor], loc_stages: Sequence[torch.Tensor],
                      anchors: torch.Tensor, theta: float = 0.95) -> CascadeProposals:
    """Run the cascade's inference rule on one image's stage outputs.

    Returns the last stage's boxes ``decode(anchors_L, deltas_L)`` and foreground probabilities,
    with the scores of anchors filtered at any earlier stage set to 0.
    """
    keep = torch.ones(anchors.shape[0], dtype=torch.bool, device=anchors.device)
    stage_anchors = [anchors]
    for cls, loc in zip(cls_stages[:-1], loc_stages[:-1], strict=True):
        keep = filter_negative_anchors(keep, cls, theta)
        stage_anchors.append(refine_anchors(stage_anchors[-1], loc))
    boxes = refine_anchors(stage_anchors[-1], loc_stages[-1])
    scores = 1.0 - background_probability(cls_stages[-1])
    return CascadeProposals(boxes, torch.where(keep, scores, torch.zeros_like(scores)), keep, stage_anchors)
