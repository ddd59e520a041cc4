"""SA-Siam (He et al., CVPR 2018): appearance + semantic branches, channel attention on the semantic one.

* Appearance branch: a SiamFC network (:class:`~siam_tracking_ros.trackers.siamfc.SiamFCNet`).
* Semantic branch: conv4 and conv5 features of a second AlexNet trunk, each passed through a
  1x1 conv fusion layer, correlated per layer (summing the two equals correlating their
  concatenation). The paper's semantic net is an ImageNet-pretrained AlexNet kept frozen; no such
  weights exist here, so this is a second trunk trained like the first.
* Channel attention (template side only, computed once at init): each channel's map of the
  search-sized template crop is max-pooled over a 3x3 grid whose centre cell is the exemplar
  window, a shared two-layer MLP and a sigmoid with bias give ``ξ_c``
  (:class:`~siam_tracking_ros.models.heads.attention.ChannelAttention`).
* The responses are combined as ``h = λ h_s + (1 - λ) h_a`` with ``λ = semantic_weight`` (0.3).

With ``backbone: mobilenetv2`` the semantic branch is what the paper describes: frozen
ImageNet-pretrained features (MobileNetV2 ``features[:14]``, one level), and the appearance
branch is SiamFC's trainable adjust neck and head over the same frozen maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from siam_tracking_ros.models.assembly import MOBILENETV2_CHANNELS
from siam_tracking_ros.models.backbones.alexnet import (
    alexnet_output_size,
    make_alexnet,
    stage_index,
    stage_outputs,
)
from siam_tracking_ros.models.heads.attention import ChannelAttention
from siam_tracking_ros.models.heads.cf_layer import center_crop
from siam_tracking_ros.models.heads.fc import FCHead
from siam_tracking_ros.trackers.registry import register_tracker
from siam_tracking_ros.trackers.seed_fc_common import ContextTemplateTracker
from siam_tracking_ros.trackers.siamfc import SiamFCConfig, SiamFCNet, exemplar_map_size

SEMANTIC_LAYERS = ("conv4", "conv5")


@dataclass
class SASiamConfig(SiamFCConfig):
    """SiamFC options (appearance branch) plus the semantic branch's."""

    #: λ: weight of the semantic response (the appearance one gets 1 - λ)
    semantic_weight: float = 0.3
    #: layout of the semantic AlexNet trunk: siamfc|pysot (unused with ``backbone: mobilenetv2``,
    #: whose frozen maps are the semantic features)
    semantic_backbone: str = "pysot"
    #: output channels of each 1x1 fusion conv
    semantic_channels: int = 128
    #: hidden width of the channel-attention MLP
    attention_hidden: int = 9


def with_context(features: torch.Tensor, inner: int) -> torch.Tensor:
    """Zero-pad a map that has no context around the ``inner`` window (a plain exemplar crop)."""
    missing = inner + 2 - features.shape[-1]
    if missing <= 0:
        return features
    pad = math.ceil(missing / 2)
    return F.pad(features, (pad, pad, pad, pad))


class SASiamNet(nn.Module):
    """Appearance :class:`SiamFCNet` + semantic trunk with attention, 1x1 fusion and per-layer heads.

    ``template`` takes the search-sized template crop (a plain exemplar crop works too: the
    attention then sees zero context) and returns the appearance kernel and the attention-weighted
    semantic kernels; the attention is not run again while tracking.
    """

    head_kind = "fc"

    def __init__(self, config: SASiamConfig) -> None:
        super().__init__()
        #: the score map's stride (training reads it from the network)
        self.stride = int(config.total_stride)
        self.semantic_weight = config.semantic_weight
        self.input_rgb = config.input_rgb
        self.appearance = SiamFCNet(config)
        self.semantic: nn.Module | None = None
        if config.backbone == "mobilenetv2":  # the frozen pretrained maps are the semantic features
            self.semantic_layers: tuple[str, ...] = ("features",)
            self.windows = [exemplar_map_size(config)]
            widths = [MOBILENETV2_CHANNELS]
        else:
            self.semantic = make_alexnet(config.semantic_backbone, config.width_mult)
            self.semantic_layers = SEMANTIC_LAYERS
            self.windows = [alexnet_output_size(config.exemplar_size, stage_index(n))
                            for n in SEMANTIC_LAYERS]
            widths = [self.semantic.layout.widths[stage_index(n) - 1] for n in SEMANTIC_LAYERS]
        self.fuse = nn.ModuleList(nn.Conv2d(w, config.semantic_channels, 1) for w in widths)
        self.attention = nn.ModuleList(ChannelAttention(w, config.attention_hidden) for w in self.windows)
        self.semantic_heads = nn.ModuleList(FCHead(config.out_scale) for _ in self.semantic_layers)
        self.appearance_window = self.windows[-1]

    @property
    def backbone(self) -> nn.Module:
        """The appearance branch's backbone (with MobileNetV2 also the semantic features')."""
        return self.appearance.backbone

    def backbone_maps(self, image: torch.Tensor) -> dict[str, Any]:
        """Both branches' backbone maps of BGR 0..255 crops (one map twice on MobileNetV2)."""
        appearance = self.appearance.backbone_maps(image)
        if self.semantic is None:
            return self.maps_from_backbone(appearance)
        semantic = stage_outputs(self.semantic, image.flip(1) if self.input_rgb else image, SEMANTIC_LAYERS)
        return {"appearance": appearance, "semantic": semantic}

    def maps_from_backbone(self, maps: torch.Tensor) -> dict[str, Any]:
        """:meth:`backbone_maps` from the MobileNetV2 map (what a frozen-feature cache stores)."""
        if self.semantic is not None:
            raise ValueError("sa_siam: only the mobilenetv2 backbone shares one map between branches")
        return {"appearance": maps, "semantic": [maps]}

    def template(self, z: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        return self.template_from_maps(self.backbone_maps(z))

    def template_from_maps(self, maps: dict[str, Any]) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """:meth:`template` from :meth:`backbone_maps`."""
        appearance = self.appearance.template_from_maps(maps["appearance"])
        appearance = center_crop(appearance, self.appearance_window)
        kernels = []
        for feats, window, attention, fuse in zip(maps["semantic"], self.windows, self.attention,
                                                  self.fuse, strict=True):
            xi = attention(with_context(feats, window))
            kernels.append(fuse(center_crop(feats, window) * xi[:, :, None, None]))
        return {"appearance": appearance, "semantic": kernels}

    def appearance_score(self, features: dict, x: torch.Tensor) -> torch.Tensor:
        """Appearance response ``h_a (B, 1, S, S)`` of search crops ``x``."""
        return self._appearance(features, self.backbone_maps(x))

    def semantic_score(self, features: dict, x: torch.Tensor) -> torch.Tensor:
        """Semantic response ``h_s (B, 1, S, S)`` of search crops ``x``: sum of the per-layer fused
        correlations."""
        return self._semantic(features, self.backbone_maps(x))

    def _appearance(self, features: dict, maps: dict[str, Any]) -> torch.Tensor:
        return self.appearance.search_from_maps(features["appearance"], maps["appearance"])["score"]

    def _semantic(self, features: dict, maps: dict[str, Any]) -> torch.Tensor:
        layers = zip(maps["semantic"], features["semantic"], self.fuse, self.semantic_heads, strict=True)
        return sum(head(kernel, fuse(feats)) for feats, kernel, fuse, head in layers)

    def search(self, features: dict, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.search_from_maps(features, self.backbone_maps(x))

    def search_from_maps(self, features: dict, maps: dict[str, Any]) -> dict[str, torch.Tensor]:
        """:meth:`search` from :meth:`backbone_maps` of the search crops."""
        weight = self.semantic_weight
        if weight == 0.0:
            return {"score": self._appearance(features, maps)}
        if weight == 1.0:
            return {"score": self._semantic(features, maps)}
        semantic = self._semantic(features, maps)
        return {"score": weight * semantic + (1.0 - weight) * self._appearance(features, maps)}

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.search(self.template(z), x)


@register_tracker("sa_siam", SASiamConfig,
                  description="SA-Siam: appearance + semantic branches with channel attention, λ-weighted")
def build_sa_siam(config: SASiamConfig, device: torch.device) -> ContextTemplateTracker:
    """Build SiamFC tracking (context template) around an untrained :class:`SASiamNet`."""
    return ContextTemplateTracker(SASiamNet(config), config, device)
