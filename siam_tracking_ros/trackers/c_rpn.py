"""C-RPN (Fan & Ling, CVPR 2019): Siamese cascaded RPNs from deep to shallow AlexNet features.

Backbone: the SiamRPN AlexNet, tapped at conv5, conv4 and conv3 (deepest first). Stage 1 is an
up-channel RPN on conv5; stage ``l`` sees ``FTB(Φ_{l-1}, conv_{6-l})`` (deconvolution + sum +
ReLU, :mod:`~siam_tracking_ros.models.necks.feature_transfer`), interpolated to stage 1's size so
that every stage scores the same ``K x 17 x 17`` anchors. Inference
(:func:`~siam_tracking_ros.models.heads.cascade_rpn.cascade_proposals`): anchors whose background
probability exceeds ``theta`` at a stage are dropped from the later ones, and stage ``l`` regresses
from the boxes of stage ``l - 1``. The last stage's foreground probability and boxes then go
through SiamRPN's scale/ratio penalty, cosine window and size smoothing
(:class:`~siam_tracking_ros.trackers.siamrpn.SiamRPNTracker`).

Training: ``head_kind = "cascade_rpn"`` selects the cascade objective
(:mod:`siam_tracking_ros.train.objectives.cascade_rpn`): every stage is labelled against its own
anchors (stage k: the boxes stage k-1 regressed, among the survivors of the negative-anchor
filter) and the stage losses are summed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from siam_tracking_ros.models.assembly import NetworkSpec, PartSpec, SiameseNet
from siam_tracking_ros.models.heads.cascade_rpn import cascade_proposals
from siam_tracking_ros.trackers.registry import register_tracker
from siam_tracking_ros.trackers.siamrpn import SiamRPNConfig, SiamRPNTracker

#: the cascade stages each backbone allows (its levels, deepest first)
STAGES = {"alexnet": (1, 2, 3), "mobilenetv2": (2,)}


@dataclass
class CRPNConfig(SiamRPNConfig):
    """SiamRPN's options plus the cascade: ``stages`` and the easy-negative threshold.

    ``backbone: alexnet`` taps conv5, conv4, conv3 (1-3 stages, 3 the paper's); ``mobilenetv2``
    (ImageNet MobileNetV2, pretrained) the dilated ``features[:17]`` and ``features[:14]`` maps,
    both stride 16 (2 stages, order :attr:`deep_first`), each through a 1x1 adjust to ``hidden``
    channels. ``stages`` left at ``None`` takes the backbone's most. ``head`` is every stage's RPN
    (``upchannel`` or ``depthwise``).
    """

    stages: int | None = None
    theta: float = 0.95
    #: ``mobilenetv2``: stage 1 on the dilated ``features[:17]`` map, the FTB into ``features[:14]``
    #: (the paper's deep-to-shallow order), or (False) the other way round
    deep_first: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backbone not in STAGES:
            raise ValueError(f"c_rpn: the cascade taps the levels of {' or '.join(STAGES)}, got "
                             f"'{self.backbone}'")
        if self.stages is None:
            self.stages = max(STAGES[self.backbone])
        if self.stages not in STAGES[self.backbone]:
            raise ValueError(f"c_rpn: stages must be one of {STAGES[self.backbone]} on {self.backbone}, "
                             f"got {self.stages}")

    def cascade_spec(self) -> NetworkSpec:
        """Backbone levels (+ adjust neck) + the ``cascade_rpn`` head."""
        head_options = {"anchor_num": self.anchor_num, "hidden": self.hidden, "rpn": self.head}
        if self.backbone == "alexnet":
            backbone = PartSpec("alexnet_levels", {"width_mult": self.width_mult, "levels": self.stages})
            return NetworkSpec(backbone, PartSpec("cascade_rpn", head_options), head_kind="cascade_rpn",
                               head_name="cascade")
        backbone = PartSpec("mobilenetv2_imagenet_levels", {"deepest_first": self.deep_first})
        neck = PartSpec("adjust", {"out_channels": [self.hidden] * self.stages, "center_size": 8})
        return NetworkSpec(backbone, PartSpec("cascade_rpn", {**head_options, "ftb_kernel": 1}), neck=neck,
                           head_kind="cascade_rpn", head_name="cascade")


class CRPNNet(SiameseNet):
    """Backbone levels + the ``cascade_rpn`` head (:meth:`CRPNConfig.cascade_spec`).

    ``search`` returns ``{"cls", "loc"}`` of stage 1 and ``{"cls_stages", "loc_stages"}`` of all.
    """

    head_kind = "cascade_rpn"

    def __init__(self, config: CRPNConfig) -> None:
        super().__init__(config.cascade_spec())

    def search(self, features: list, x: torch.Tensor, return_features: bool = False) -> dict:
        out = super().search(features, x, return_features)
        out["cls"], out["loc"] = out["cls_stages"][0], out["loc_stages"][0]
        return out


class CRPNTracker(SiamRPNTracker):
    """SiamRPN tracking whose proposals come from the cascade (see module docstring)."""

    config: CRPNConfig

    def decode(self, out: Mapping[str, torch.Tensor], instance_size: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes and scores of the last cascade stage; anchors filtered out on the way are invalid."""
        anchors = self.geometry(instance_size).anchors
        cascade = cascade_proposals([c.float() for c in out["cls_stages"]],
                                    [v.float() for v in out["loc_stages"]], anchors, self.config.theta)
        score = torch.nan_to_num(cascade.scores, nan=0.0).double().cpu().numpy()
        boxes = torch.nan_to_num(cascade.boxes, nan=0.0, posinf=0.0, neginf=0.0).double().cpu().numpy()
        boxes[:, 2:] = np.maximum(boxes[:, 2:], 1.0)
        return score, boxes, cascade.keep.cpu().numpy()


@register_tracker("c_rpn", CRPNConfig,
                  description="C-RPN: cascaded RPN stages with feature transfer blocks and anchor filtering")
def build_c_rpn(config: CRPNConfig, device: torch.device) -> CRPNTracker:
    """Build a :class:`CRPNTracker` with an untrained :class:`CRPNNet`."""
    return CRPNTracker(CRPNNet(config), config, device)
