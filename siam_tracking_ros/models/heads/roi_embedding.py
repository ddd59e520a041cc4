"""SINT: region-of-interest pooling and the multi-layer, L2-normalised candidate embedding.

Tao, Gavves & Smeulders, "Siamese Instance Search for Tracking" (CVPR 2016). One backbone pass
over an image, then every candidate box is pooled from two conv levels (the paper: conv4_3 and
conv5_3 of VGG16) with region-of-interest pooling; the pooled maps and an fc layer on the deeper
one are each L2-normalised and concatenated. Matching is the cosine similarity of embeddings.

Boxes here are ``(N, 4)`` corners ``x1, y1, x2, y2`` in input-image pixels of one image, in
continuous coordinates (pixel ``k`` covers ``[k, k+1)``). torchvision is not a dependency, so
both pooling operators are written here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from siam_tracking_ros.models.assembly import NetworkSpec, PartSpec, build_part, out_channels, register_part


def _axis_weights(low: torch.Tensor, high: torch.Tensor, output_size: int, sampling_ratio: int,
                  size: int) -> torch.Tensor:
    """Per-bin averaged bilinear weights along one axis, ``(N, output_size, size)``.

    The bilinear weight of cell ``k`` (centre ``k + 0.5``) for a sample at ``p`` is the tent
    ``max(0, 1 - |p - 0.5 - k|)``; cells outside the map simply do not exist (zero padding).
    """
    points = output_size * sampling_ratio
    steps = (torch.arange(points, device=low.device, dtype=low.dtype) + 0.5) / points
    samples = low[:, None] + steps[None] * (high - low)[:, None] - 0.5  # (N, P) in cell units
    cells = torch.arange(size, device=low.device, dtype=low.dtype)
    weights = (1.0 - (samples[:, :, None] - cells).abs()).clamp(min=0.0)
    return weights.view(low.shape[0], output_size, sampling_ratio, size).mean(dim=2)


def _sample_points(boxes: torch.Tensor, points: int, height: int, width: int) -> torch.Tensor:
    """``grid_sample`` grid ``(1, N * points, points, 2)`` of a regular grid inside each box."""
    count = boxes.shape[0]
    steps = (torch.arange(points, device=boxes.device, dtype=boxes.dtype) + 0.5) / points
    xs = boxes[:, 0:1] + steps[None] * (boxes[:, 2:3] - boxes[:, 0:1])  # (N, P)
    ys = boxes[:, 1:2] + steps[None] * (boxes[:, 3:4] - boxes[:, 1:2])
    grid = torch.stack([(2.0 * xs / width - 1.0)[:, None, :].expand(count, points, points),
                        (2.0 * ys / height - 1.0)[:, :, None].expand(count, points, points)], dim=-1)
    return grid.reshape(1, count * points, points, 2)


def roi_align(features: torch.Tensor, boxes: torch.Tensor, output_size: int, spatial_scale: float,
              sampling_ratio: int = 2, mode: str = "avg") -> torch.Tensor:
    """RoIAlign of one image's feature map: bilinear samples on a regular grid in each bin.

    ``features (1, C, H, W)``, ``boxes (N, 4)`` -> ``(N, C, output_size, output_size)``. Each bin
    is sampled at ``sampling_ratio^2`` evenly spaced points (bilinear, zero outside the map) and
    reduced by their mean (``mode="avg"``) or maximum (``"max"``). The mean is separable and
    runs as two matrix products; the maximum uses one ``grid_sample`` call for all boxes.
    """
    if features.shape[0] != 1:
        raise ValueError("roi_align pools the boxes of one image: features must be (1, C, H, W)")
    count = boxes.shape[0]
    _, channels, height, width = features.shape
    scaled = (boxes * spatial_scale).to(features.dtype)
    if mode == "max":
        points = output_size * sampling_ratio
        sampled = F.grid_sample(features, _sample_points(scaled, points, height, width), mode="bilinear",
                                padding_mode="zeros", align_corners=False)
        sampled = sampled.reshape(channels, count, output_size, sampling_ratio, output_size, sampling_ratio)
        return sampled.amax(dim=(3, 5)).permute(1, 0, 2, 3)
    rows = _axis_weights(scaled[:, 1], scaled[:, 3], output_size, sampling_ratio, height)
    cols = _axis_weights(scaled[:, 0], scaled[:, 2], output_size, sampling_ratio, width)
    by_rows = rows.reshape(count * output_size, height) @ features[0].transpose(0, 1).reshape(
        height, channels * width)  # (N * out, C * W)
    pooled = by_rows.view(count, output_size * channels, width) @ cols.transpose(1, 2)
    return pooled.view(count, output_size, channels, output_size).transpose(1, 2)


def roi_max_pool(features: torch.Tensor, boxes: torch.Tensor, output_size: int,
                 spatial_scale: float) -> torch.Tensor:
    """Fast R-CNN RoI max pooling: boxes rounded to feature cells, max over each of the bins.

    Bin ``i`` of a region of ``n`` cells spans cells ``floor(i n / k) .. ceil((i+1) n / k) - 1``.
    ``features (1, C, H, W)``, ``boxes (N, 4)`` -> ``(N, C, output_size, output_size)``.
    """
    _, _, height, width = features.shape
    cells = torch.round(boxes * spatial_scale).long().tolist()
    pooled = []
    for x1, y1, x2, y2 in cells:
        x1, x2 = min(max(x1, 0), width - 1), min(max(x2, 0), width - 1)
        y1, y2 = min(max(y1, 0), height - 1), min(max(y2, 0), height - 1)
        region = features[0, :, y1:max(y2, y1) + 1, x1:max(x2, x1) + 1]
        pooled.append(F.adaptive_max_pool2d(region, output_size))
    return torch.stack(pooled)


def _conv_block(in_channels: int, out_channels: int, convs: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for index in range(convs):
        layers += [nn.Conv2d(in_channels if index == 0 else out_channels, out_channels, 3, padding=1),
                   nn.ReLU(inplace=True)]
    return layers


class SINTBackbone(nn.Module):
    """VGG-style (3x3, padding 1) features at stride 8 (``level4``) and 16 (``level5``).

    ``widths`` are the channels of the five blocks; the paper uses VGG16 (64-128-256-512-512,
    2-2-3-3-3 convs). Padding keeps box coordinates aligned with feature cells.
    """

    def __init__(self, widths: Sequence[int] = (64, 128, 256, 512, 512),
                 convs: Sequence[int] = (2, 2, 3, 3, 3)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for index in range(4):
            layers += _conv_block(in_channels, widths[index], convs[index])
            if index < 3:
                layers.append(nn.MaxPool2d(2, 2))
            in_channels = widths[index]
        self.to_level4 = nn.Sequential(*layers)
        self.to_level5 = nn.Sequential(nn.MaxPool2d(2, 2), *_conv_block(widths[3], widths[4], convs[4]))
        self.channels = (widths[3], widths[4])
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        level4 = self.to_level4(x)
        return level4, self.to_level5(level4)


register_part("backbone", "sint_vgg")(SINTBackbone)


class ROIEmbedding(nn.Module):
    """Candidate embedding: RoI-pool two levels, fc on the deeper, L2-normalise each, concatenate.

    Args:
        channels: channels of the two levels (stride 8 and 16).
        pool_size: RoI output side (paper: 7).
        fc_dim: width of the fc layer on the pooled deeper level.
        pooling: ``align`` (RoIAlign, average) or ``max`` (Fast R-CNN RoI max pooling).
    """

    strides = (8, 16)

    def __init__(self, channels: Sequence[int], pool_size: int = 7, fc_dim: int = 1024,
                 pooling: str = "align") -> None:
        super().__init__()
        if pooling not in {"align", "max"}:
            raise ValueError(f"unknown RoI pooling '{pooling}' (align|max)")
        self.pool_size = pool_size
        self.pooling = pooling
        self.fc = nn.Sequential(nn.Linear(channels[1] * pool_size * pool_size, fc_dim), nn.ReLU(inplace=True))

    def pool(self, feature: torch.Tensor, boxes: torch.Tensor, stride: int) -> torch.Tensor:
        """Pool ``boxes`` from one level; ``(N, C * pool * pool)``."""
        if self.pooling == "max":
            pooled = roi_max_pool(feature, boxes, self.pool_size, 1.0 / stride)
        else:
            pooled = roi_align(feature, boxes, self.pool_size, 1.0 / stride)
        return pooled.flatten(1)

    def forward(self, levels: Sequence[torch.Tensor], boxes: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(N, D)`` of ``boxes`` on one image's ``levels``; unit L2 norm."""
        pooled4 = self.pool(levels[0], boxes, self.strides[0])
        pooled5 = self.pool(levels[1], boxes, self.strides[1])
        parts = [F.normalize(pooled4, dim=1), F.normalize(pooled5, dim=1),
                 F.normalize(self.fc(pooled5), dim=1)]
        return F.normalize(torch.cat(parts, dim=1), dim=1)

    def regression_features(self, levels: Sequence[torch.Tensor], boxes: torch.Tensor) -> torch.Tensor:
        """L2-normalised pooled deeper level, the input of SINT's box regressor."""
        return F.normalize(self.pool(levels[1], boxes, self.strides[1]), dim=1)


class RidgeBoxRegressor:
    """SINT's bounding-box regression: ridge regression from RoI features to box corrections.

    Fitted once on the first frame on boxes sampled around the target (as R-CNN's regressor):
    targets ``(dx, dy, dw, dh) = ((gx - px) / pw, (gy - py) / ph, log(gw / pw), log(gh / ph))``
    on centre/size boxes. Solved in the dual (``M`` samples << feature size ``D``):
    ``W = Xᵀ (X Xᵀ + λ I)⁻¹ Y``, with a bias column.
    """

    def __init__(self, ridge_lambda: float = 1.0) -> None:
        self.ridge_lambda = ridge_lambda
        self.weights: torch.Tensor | None = None

    @staticmethod
    def targets(proposals: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Regression targets of ``proposals (M, 4)`` towards ``target (4,)``, both cxcywh."""
        shift = (target[:2] - proposals[:, :2]) / proposals[:, 2:]
        return torch.cat([shift, torch.log(target[2:] / proposals[:, 2:])], dim=1)

    @staticmethod
    def _with_bias(features: torch.Tensor) -> torch.Tensor:
        return torch.cat([features, torch.ones_like(features[:, :1])], dim=1)

    def fit(self, features: torch.Tensor, proposals: torch.Tensor, target: torch.Tensor) -> None:
        """Fit on ``features (M, D)`` of ``proposals (M, 4)`` around ``target (4,)`` (cxcywh)."""
        x = self._with_bias(features.double())
        y = self.targets(proposals.double(), target.double())
        gram = x @ x.T + self.ridge_lambda * torch.eye(x.shape[0], dtype=x.dtype, device=x.device)
        self.weights = (x.T @ torch.linalg.solve(gram, y)).to(features.dtype)

    def predict(self, features: torch.Tensor, proposals: torch.Tensor) -> torch.Tensor:
        """Corrected boxes ``(N, 4)`` cxcywh; the proposals unchanged before :meth:`fit`."""
        if self.weights is None:
            return proposals
        deltas = self._with_bias(features) @ self.weights
        centre = proposals[:, :2] + deltas[:, :2] * proposals[:, 2:]
        return torch.cat([centre, proposals[:, 2:] * torch.exp(deltas[:, 2:].clamp(-1.0, 1.0))], dim=1)


@register_part("head", "roi_embedding")
def roi_embedding_head(in_channels: Sequence[int], pool_size: int = 7, fc_dim: int = 1024,
                       pooling: str = "align") -> ROIEmbedding:
    """:class:`ROIEmbedding` over the two backbone levels of ``in_channels``."""
    return ROIEmbedding(in_channels, pool_size, fc_dim, pooling)


def sint_spec(widths: Sequence[int] = (64, 128, 256, 512, 512), convs: Sequence[int] = (2, 2, 3, 3, 3),
              pool_size: int = 7, fc_dim: int = 1024, pooling: str = "align") -> NetworkSpec:
    """SINT's parts: the ``sint_vgg`` backbone and the ``roi_embedding`` head (attribute ``embedding``)."""
    return NetworkSpec(PartSpec("sint_vgg", {"widths": tuple(widths), "convs": tuple(convs)}),
                       PartSpec("roi_embedding",
                                {"pool_size": pool_size, "fc_dim": fc_dim, "pooling": pooling}),
                       head_kind="sint", outputs=("score", "embedding"), head_name="embedding")


class SINTNet(nn.Module):
    """SINT matching network: backbone + :class:`ROIEmbedding`; ``head_kind = "sint"``.

    Its parts come from a spec (:func:`sint_spec`, built by the assembly's :func:`build_part`);
    the passes are SINT's own, not :class:`~siam_tracking_ros.models.assembly.SiameseNet`'s:
    they embed candidate *boxes* of whole images rather than correlating a template with a
    search crop, so there is no score map and no stride.

    - ``template(z, boxes=None)``: embeddings ``(N, D)`` of ``boxes`` in ``z (1, 3, H, W)`` (the whole
      image when ``None``; with ``B > 1`` images and no boxes, one whole-image embedding each),
    - ``search(template, x, boxes=None)``: ``{"score": cosine similarity (N,) to template[0] (or
      pairwise for whole images), "embedding": (N, D)}``.

    Input: BGR 0..255; ImageNet normalisation happens inside.
    """

    head_kind = "sint"

    def __init__(self, widths: Sequence[int] = (64, 128, 256, 512, 512),
                 convs: Sequence[int] = (2, 2, 3, 3, 3),
                 pool_size: int = 7, fc_dim: int = 1024, pooling: str = "align") -> None:
        super().__init__()
        self.spec = sint_spec(widths, convs, pool_size, fc_dim, pooling)
        self.backbone = build_part("backbone", self.spec.backbone)
        self.embedding = build_part("head", self.spec.head, out_channels(self.backbone))
        self.register_buffer("mean", torch.tensor([0.406, 0.456, 0.485]).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor([0.225, 0.224, 0.229]).view(1, 3, 1, 1) * 255.0)

    def features(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both levels of BGR 0..255 images."""
        return self.backbone((image - self.mean) / self.std)

    def embed(self, image: torch.Tensor, boxes: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings of ``boxes`` in one image, or of each whole image when ``boxes`` is None."""
        levels = self.features(image)
        if boxes is not None:
            return self.embedding(levels, boxes)
        height, width = image.shape[-2:]
        whole = torch.tensor([[0.0, 0.0, float(width), float(height)]], device=image.device,
                             dtype=image.dtype)
        return torch.cat([self.embedding([lv[i:i + 1] for lv in levels], whole)
                          for i in range(image.shape[0])])

    def template(self, z: torch.Tensor, boxes: torch.Tensor | None = None) -> torch.Tensor:
        return self.embed(z, boxes)

    def search(self, template: torch.Tensor, x: torch.Tensor,
               boxes: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        embedding = self.embed(x, boxes)
        reference = template if template.shape[0] == embedding.shape[0] else template[:1]
        return {"score": (embedding * reference).sum(dim=1), "embedding": embedding}

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.search(self.template(z), x)
