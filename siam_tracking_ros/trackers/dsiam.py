"""DSiam (Guo et al., ICCV 2017): SiamFC with online transforms and element-wise multi-layer fusion.

For each fused layer ``l`` (AlexNet conv4 and conv5) the response at frame ``t`` is (DSiam eq. 2)::

    S_t^l = corr(V_{t-1}^l ⊛ f^l(O_1), W_{t-1}^l ⊛ f^l(Z_t))

``V`` (target appearance variation) maps the first frame's template features to those of the
target at frame t-1; ``W`` (background suppression) maps frame t-1's search-region features to
their Gaussian-weighted version. Both are regularised linear regressions solved per channel in
the Fourier domain (:mod:`~siam_tracking_ros.models.heads.dsiam_transforms`), re-learned after
every frame from a search-sized crop centred on the new estimate (whose central window gives the
target features). The layer responses are fused with learned per-position weights, softmax-
normalised over the layers. Training (``forward``) uses identity transforms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from siam_tracking_ros.core.result import TrackResult
from siam_tracking_ros.models.assembly import build_part, mobilenetv2_parts
from siam_tracking_ros.models.backbones.alexnet import make_alexnet, stage_outputs
from siam_tracking_ros.models.heads.cf_layer import center_crop
from siam_tracking_ros.models.heads.dsiam_transforms import (
    TRANSFORM_PRIORS,
    ElementwiseFusion,
    apply_transform,
    gaussian_map,
    relative_lambda,
    solve_transform,
)
from siam_tracking_ros.models.heads.fc import FCHead
from siam_tracking_ros.trackers.registry import register_tracker
from siam_tracking_ros.trackers.siamfc import SiamFCConfig, SiamFCTracker


@dataclass
class DSiamConfig(SiamFCConfig):
    """SiamFC options and hyper-parameters plus DSiam's transforms and fusion."""

    #: comma-separated AlexNet stages whose responses are fused (the ``mobilenetv2`` backbone has
    #: one level: its adjusted ``features[:14]`` map)
    layers: str = "conv4,conv5"
    #: regularisers of V and W, relative to the mean spectral power of the regression input
    lambda_v: float = 0.1
    lambda_w: float = 0.1
    #: σ of W's Gaussian weight map as a multiple of the target's extent (per axis)
    suppress_sigma: float = 0.6
    #: learn V (appearance variation) / W (background suppression) online
    online_v: bool = True
    online_w: bool = True
    #: what the regularisers pull V and W towards: ``zero`` (the paper's ``λ ||V||²``) or
    #: ``identity`` (``λ ||V - δ||²``: a large λ keeps SiamFC's plain features)
    transform_prior: str = "zero"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.transform_prior not in TRANSFORM_PRIORS:
            raise ValueError(f"dsiam: transform_prior must be one of {TRANSFORM_PRIORS}, "
                             f"got {self.transform_prior!r}")

    @property
    def layer_names(self) -> tuple[str, ...]:
        """The fused stages as a tuple."""
        return tuple(name.strip() for name in self.layers.split(",") if name.strip())


class DSiamNet(nn.Module):
    """AlexNet, one :class:`FCHead` per fused layer, :class:`ElementwiseFusion`.

    ``template`` returns ``{"kernels": [...], "search_transforms": [...]}``: the tracker replaces
    the kernels by ``V ⊛ f(O_1)`` and sets the Fourier-domain ``W`` applied in ``search``.
    """

    head_kind = "fc"

    def __init__(self, config: DSiamConfig) -> None:
        super().__init__()
        #: the score map's stride (training reads it from the network)
        self.stride = int(config.total_stride)
        self.layers = config.layer_names
        if not self.layers:
            raise ValueError("dsiam: 'layers' names no stage")
        self.input_rgb = config.input_rgb
        self.neck: nn.Module | None = None
        if config.backbone == "mobilenetv2":
            backbone, neck = mobilenetv2_parts(config.adjust_channels)
            self.backbone = build_part("backbone", backbone)
            self.neck = build_part("neck", neck)
            self.layers = ("features",)
        else:
            self.backbone = make_alexnet(config.backbone, config.width_mult)
        self.heads = nn.ModuleList(FCHead(config.out_scale) for _ in self.layers)
        self.fusion = ElementwiseFusion(len(self.layers), config.score_size)

    def backbone_maps(self, image: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """The backbone's maps of BGR 0..255 crops (the MobileNetV2 map, or the fused AlexNet stages)."""
        if self.neck is not None:
            return self.backbone(image)
        return stage_outputs(self.backbone, image.flip(1) if self.input_rgb else image, self.layers)

    def embed(self, maps: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-layer features from backbone maps (the adjust neck on MobileNetV2)."""
        return [self.neck(maps)] if self.neck is not None else list(maps)

    def features(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer features of BGR 0..255 crops."""
        return self.embed(self.backbone_maps(image))

    def template(self, z: torch.Tensor) -> dict[str, list]:
        return self.template_from_maps(self.backbone_maps(z))

    def template_from_maps(self, maps: torch.Tensor | list[torch.Tensor]) -> dict[str, list]:
        """:meth:`template` from the backbone maps (identity transforms)."""
        return {"kernels": self.embed(maps), "search_transforms": [None] * len(self.layers)}

    def respond(self, kernels: list[torch.Tensor], search: list[torch.Tensor]) -> torch.Tensor:
        """Fused response ``(B, 1, S, S)`` of per-layer kernels and search features."""
        return self.fusion([head(k, x) for head, k, x in zip(self.heads, kernels, search, strict=True)])

    def search(self, features: dict[str, list], x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.search_from_maps(features, self.backbone_maps(x))

    def search_from_maps(self, features: dict[str, list], maps: torch.Tensor | list[torch.Tensor]
                         ) -> dict[str, torch.Tensor]:
        """:meth:`search` from the search crops' backbone maps."""
        transformed = [apply_transform(w, f) for w, f in
                       zip(features["search_transforms"], self.embed(maps), strict=True)]
        return {"score": self.respond(features["kernels"], transformed)}

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.search(self.template(z), x)


class DSiamTracker(SiamFCTracker):
    """SiamFC multi-scale tracking with V and W re-learned after every frame."""

    config: DSiamConfig

    def _init(self, frame: np.ndarray, box: tuple[float, ...]) -> None:
        super()._init(frame, box)
        assert self._kernel is not None
        self._first = list(self._kernel["kernels"])

    def _track(self, frame: np.ndarray) -> TrackResult:
        result = super()._track(frame)
        if self.config.online_v or self.config.online_w:
            self.update_transforms(frame)
        return result

    def update_transforms(self, frame: np.ndarray) -> None:
        """Learn V and W from a search-sized crop centred on the current estimate."""
        cfg = self.config
        x = self.crop(self.upload(frame), self.center, self.x_sz, cfg.instance_size, self.avg_color)
        search = self.model.features(x.to(self.dtype))
        kernels, transforms = self._kernel["kernels"], self._kernel["search_transforms"]
        for index, (first, feats) in enumerate(zip(self._first, search, strict=True)):
            if cfg.online_v:
                target = center_crop(feats, first.shape[-1])
                v_hat = solve_transform(first, target, relative_lambda(first, cfg.lambda_v),
                                        cfg.transform_prior)
                kernels[index] = apply_transform(v_hat, first)
            if cfg.online_w:
                weighted = feats * self.suppression_map(feats.shape[-1], feats.device, feats.dtype)
                transforms[index] = solve_transform(feats, weighted, relative_lambda(feats, cfg.lambda_w),
                                                    cfg.transform_prior)

    def suppression_map(self, size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Gaussian weight map over the search features, centred on the target, σ ∝ its extent."""
        cfg = self.config
        cells = self.target_sz * cfg.instance_size / self.x_sz / cfg.total_stride
        sigma = np.maximum(cfg.suppress_sigma * cells, 0.5)
        centre = (size - 1) / 2.0
        return gaussian_map(size, size, (centre, centre), (float(sigma[1]), float(sigma[0])), device, dtype)


@register_tracker("dsiam", DSiamConfig,
                  description="DSiam: online appearance-variation / background-suppression transforms, "
                              "element-wise multi-layer fusion")
def build_dsiam(config: DSiamConfig, device: torch.device) -> DSiamTracker:
    """Build a :class:`DSiamTracker` with an untrained :class:`DSiamNet`."""
    return DSiamTracker(DSiamNet(config), config, device)
