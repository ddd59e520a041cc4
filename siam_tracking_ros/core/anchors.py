"""Anchors of the SiamRPN family: generation, box-delta coding, IoU and NMS.

Layout (as pysot and DaSiamRPN): an RPN head with ``K`` anchors per position on an ``S x S`` score
map produces ``cls (B, 2K, S, S)`` and ``loc (B, 4K, S, S)``. Proposals are numbered
anchor-major, ``index = k * S * S + row * S + col``; :func:`flatten_cls` / :func:`flatten_loc`
bring the head outputs into that order and :func:`generate_anchors` produces anchors in it.

Anchor boxes are ``(cx, cy, w, h)`` in search-crop pixels relative to the crop centre
(``center=0``), or absolute when ``center`` is the crop centre coordinate (training).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

#: SiamRPN defaults
DEFAULT_RATIOS = (0.33, 0.5, 1.0, 2.0, 3.0)
DEFAULT_SCALES = (8.0,)
DEFAULT_STRIDE = 8


def score_map_size(instance_size: int, exemplar_size: int, stride: int, base_size: int = 0) -> int:
    """Side of the score map: ``(instance - exemplar) // stride + 1 + base_size`` (pysot)."""
    return (instance_size - exemplar_size) // stride + 1 + base_size


def anchor_shapes(stride: int = DEFAULT_STRIDE, ratios: Sequence[float] = DEFAULT_RATIOS,
                  scales: Sequence[float] = DEFAULT_SCALES) -> np.ndarray:
    """The ``K = len(ratios) * len(scales)`` anchor sizes ``(w, h)``, ratio-major.

    For each ratio ``r = h / w``: ``ws = int(sqrt(stride^2 / r))``, ``hs = int(ws * r)``, then
    ``(ws * s, hs * s)`` for each scale ``s`` (integer truncation as in the reference trackers).
    """
    area = float(stride * stride)
    sizes = []
    for ratio in ratios:
        ws = int(math.sqrt(area / ratio))
        hs = int(ws * ratio)
        sizes.extend((ws * scale, hs * scale) for scale in scales)
    return np.asarray(sizes, dtype=np.float32)


def generate_anchors(score_size: int, stride: int = DEFAULT_STRIDE,
                     ratios: Sequence[float] = DEFAULT_RATIOS, scales: Sequence[float] = DEFAULT_SCALES,
                     center: float = 0.0) -> np.ndarray:
    """All anchors of an ``S x S`` score map, ``(K * S * S, 4)`` float32 ``(cx, cy, w, h)``.

    Cell ``(row, col)`` is centred at ``center + (col - S // 2) * stride`` (x) and likewise in y,
    so the middle cell sits on the crop centre. Order is anchor-major (see module docstring).
    """
    shapes = anchor_shapes(stride, ratios, scales)
    offsets = (np.arange(score_size, dtype=np.float32) - score_size // 2) * stride + center
    ys, xs = np.meshgrid(offsets, offsets, indexing="ij")
    count = shapes.shape[0]
    cells = score_size * score_size
    out = np.empty((count, cells, 4), dtype=np.float32)
    out[:, :, 0] = xs.reshape(1, -1)
    out[:, :, 1] = ys.reshape(1, -1)
    out[:, :, 2] = shapes[:, 0:1]
    out[:, :, 3] = shapes[:, 1:2]
    return out.reshape(-1, 4)


def flatten_cls(cls: torch.Tensor) -> torch.Tensor:
    """``(B, 2K, S, S)`` -> ``(B, K*S*S, 2)`` logits ``(background, foreground)``, anchor-major."""
    batch = cls.shape[0]
    return cls.reshape(batch, 2, -1).transpose(1, 2)


def flatten_loc(loc: torch.Tensor) -> torch.Tensor:
    """``(B, 4K, S, S)`` -> ``(B, K*S*S, 4)`` deltas ``(dx, dy, dw, dh)``, anchor-major."""
    batch = loc.shape[0]
    return loc.reshape(batch, 4, -1).transpose(1, 2)


def foreground_probability(cls: torch.Tensor) -> torch.Tensor:
    """Softmax foreground probability per proposal, ``(B, K*S*S)``."""
    return torch.softmax(flatten_cls(cls), dim=-1)[..., 1]


#: clamp for ``dw, dh`` when decoding at tracking time (a 62x size change), as torchvision does
MAX_LOG_SCALE = math.log(1000.0 / 16.0)


def decode_deltas(deltas: torch.Tensor, anchors: torch.Tensor,
                  max_log_scale: float | None = None) -> torch.Tensor:
    """Apply SiamRPN box deltas to anchors.

    ``cx = dx * wa + cxa``, ``cy = dy * ha + cya``, ``w = exp(dw) * wa``, ``h = exp(dh) * ha``.
    ``deltas (..., N, 4)``, ``anchors (N, 4)`` cxcywh -> boxes ``(..., N, 4)`` cxcywh.
    ``max_log_scale`` (e.g. :data:`MAX_LOG_SCALE`) clamps ``dw, dh`` so that sizes stay finite.
    """
    log_scale = deltas[..., 2:]
    if max_log_scale is not None:
        log_scale = log_scale.clamp(-max_log_scale, max_log_scale)
    centre = deltas[..., :2] * anchors[..., 2:] + anchors[..., :2]
    size = torch.exp(log_scale) * anchors[..., 2:]
    return torch.cat([centre, size], dim=-1)


def encode_deltas(boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`decode_deltas`: regression targets of ``boxes`` w.r.t. ``anchors``.

    ``dx = (cx - cxa) / wa``, ``dy = (cy - cya) / ha``, ``dw = log(w / wa)``, ``dh = log(h / ha)``.
    """
    shift = (boxes[..., :2] - anchors[..., :2]) / anchors[..., 2:]
    scale = torch.log(boxes[..., 2:] / anchors[..., 2:])
    return torch.cat([shift, scale], dim=-1)


def cxcywh_to_corners(boxes: torch.Tensor) -> torch.Tensor:
    """``(cx, cy, w, h)`` -> ``(x1, y1, x2, y2)``."""
    half = boxes[..., 2:] / 2
    return torch.cat([boxes[..., :2] - half, boxes[..., :2] + half], dim=-1)


def corners_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """``(x1, y1, x2, y2)`` -> ``(cx, cy, w, h)``."""
    return torch.cat([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], dim=-1)


def iou_corners(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise IoU of corner boxes ``(..., 4)`` (broadcasting); 0 where the union is empty."""
    left_top = torch.maximum(a[..., :2], b[..., :2])
    right_bottom = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (right_bottom - left_top).clamp(min=0).prod(dim=-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(dim=-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(dim=-1)
    union = area_a + area_b - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))


def pairwise_iou_cxcywh(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix ``(N, M)`` between cxcywh boxes ``a (N, 4)`` and ``b (M, 4)``."""
    return iou_corners(cxcywh_to_corners(a)[:, None, :], cxcywh_to_corners(b)[None, :, :])


def nms_cxcywh(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
               max_keep: int | None = None) -> torch.Tensor:
    """Greedy non-maximum suppression; indices of kept boxes, highest score first.

    Meant for the few dozen top proposals of one frame (the IoU matrix is ``N x N``).
    """
    order = torch.argsort(scores, descending=True)
    iou = pairwise_iou_cxcywh(boxes[order], boxes[order])
    suppressed = torch.zeros(order.numel(), dtype=torch.bool)
    over = (iou > iou_threshold).cpu()
    keep: list[int] = []
    for i in range(order.numel()):
        if suppressed[i]:
            continue
        keep.append(i)
        if max_keep is not None and len(keep) >= max_keep:
            break
        suppressed |= over[i]
    return order[torch.as_tensor(keep, dtype=torch.long, device=order.device)]
