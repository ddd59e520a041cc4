"""Box geometry, crops with border padding, windows and penalties shared by all variants.

Conventions: boxes are ``(x, y, w, h)`` with a 0-based top-left corner in source pixels unless
a name says ``cxcywh``. Frames are HxWx3 uint8 BGR numpy arrays; on the torch side they are
``(1, 3, H, W)`` float tensors on the tracker's device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def xywh_to_cxcywh(box: Sequence[float]) -> np.ndarray:
    """``(x, y, w, h)`` -> ``(cx, cy, w, h)``."""
    x, y, w, h = (float(v) for v in box)
    return np.array([x + w / 2.0, y + h / 2.0, w, h], dtype=np.float64)


def cxcywh_to_xywh(box: Sequence[float]) -> np.ndarray:
    """``(cx, cy, w, h)`` -> ``(x, y, w, h)``."""
    cx, cy, w, h = (float(v) for v in box)
    return np.array([cx - w / 2.0, cy - h / 2.0, w, h], dtype=np.float64)


def iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes ``(..., 4)`` in ``xywh``; 0 where either box is empty."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ix = np.clip(np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2])
                 - np.maximum(a[..., 0], b[..., 0]), 0.0, None)
    iy = np.clip(np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3])
                 - np.maximum(a[..., 1], b[..., 1]), 0.0, None)
    inter = ix * iy
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return out


def context_size(w: float, h: float, context_amount: float = 0.5) -> float:
    """Side of the square exemplar region: ``sqrt((w + p)(h + p))`` with ``p = c (w + h)``."""
    pad = context_amount * (w + h)
    return math.sqrt((w + pad) * (h + pad))


def padded_size(w: np.ndarray | float, h: np.ndarray | float) -> np.ndarray | float:
    """Size measure used by scale penalties: ``sqrt((w + p)(h + p))`` with ``p = (w + h) / 2``."""
    pad = (w + h) * 0.5
    return np.sqrt((w + pad) * (h + pad))


def change_ratio(r: np.ndarray | float) -> np.ndarray | float:
    """``max(r, 1/r)``: how far a ratio is from 1, symmetric in its direction."""
    return np.maximum(r, 1.0 / r)


def scale_ratio_penalty(pred_w: np.ndarray, pred_h: np.ndarray, target_w: float, target_h: float,
                        penalty_k: float) -> np.ndarray:
    """SiamRPN scale/aspect-ratio change penalty ``exp(-k (r_c s_c - 1))`` for each proposal.

    Sizes must all be in the same frame (e.g. the resized search crop).
    """
    s_c = change_ratio(padded_size(pred_w, pred_h) / padded_size(target_w, target_h))
    r_c = change_ratio((target_w / target_h) / (pred_w / pred_h))
    return np.exp(-(r_c * s_c - 1.0) * penalty_k)


def cosine_window(size: int) -> np.ndarray:
    """Flattened-ready ``size x size`` Hann window (outer product), float32."""
    hann = np.hanning(size)
    return np.outer(hann, hann).astype(np.float32)


def clip_box_xywh(cx: float, cy: float, w: float, h: float, frame_shape: Sequence[int],
                  min_size: float = 10.0) -> tuple[float, float, float, float]:
    """Clamp a centre/size state to the frame, as trackers do after each update."""
    height, width = frame_shape[:2]
    cx = float(np.clip(cx, 0, width))
    cy = float(np.clip(cy, 0, height))
    w = float(np.clip(w, min_size, width))
    h = float(np.clip(h, min_size, height))
    return cx, cy, w, h


def crop_window(center: Sequence[float], crop_size: float) -> tuple[float, float]:
    """Top-left corner of the integer-aligned square crop of side ``round(crop_size)``.

    ``center`` is continuous (pixel ``i`` spans ``[i, i + 1)``; a box's centre is ``x + w / 2``):
    the corner is ``round(c - s / 2)``, so the crop is centred on ``center`` to within half a pixel
    of rounding and carries no systematic offset. The pysot/OpenCV trackers' corner
    ``floor(p - (s + 1) / 2 + 0.5)`` for a pixel-index centre ``p`` is ``crop_window(p - 0.5)``.
    """
    side = round(crop_size)
    return (float(math.floor(center[0] - side / 2.0 + 0.5)),
            float(math.floor(center[1] - side / 2.0 + 0.5)))


def crop_subwindow_numpy(frame: np.ndarray, center: Sequence[float], crop_size: float,
                         out_size: int, pad_value: Sequence[float]) -> np.ndarray:
    """Reference crop: pad the border with ``pad_value``, cut the square, resize (cv2 linear).

    Returns an ``out_size x out_size x C`` float32 array. Used for tests and as the CPU path of
    trackers that prefer OpenCV.
    """
    side = round(crop_size)
    xmin, ymin = crop_window(center, crop_size)
    xmin, ymin = int(xmin), int(ymin)
    xmax, ymax = xmin + side - 1, ymin + side - 1
    height, width = frame.shape[:2]
    left, top = max(0, -xmin), max(0, -ymin)
    right, bottom = max(0, xmax - width + 1), max(0, ymax - height + 1)
    if left or top or right or bottom:
        padded = cv2.copyMakeBorder(frame, top, bottom, left, right, cv2.BORDER_CONSTANT,
                                    value=[float(v) for v in pad_value])
    else:
        padded = frame
    patch = padded[ymin + top:ymax + top + 1, xmin + left:xmax + left + 1]
    if side != out_size:
        patch = cv2.resize(patch, (out_size, out_size))
    return patch.astype(np.float32)


class FrameUploader:
    """Moves BGR uint8 frames to the device as ``(1, 3, H, W)`` float tensors.

    Keeps one device buffer per frame shape so that steady-state tracking allocates nothing.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)
        self._raw: torch.Tensor | None = None
        self._float: torch.Tensor | None = None

    def __call__(self, frame: np.ndarray) -> torch.Tensor:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 BGR frame, got {frame.dtype} {frame.shape}")
        if self._raw is None or tuple(self._raw.shape) != frame.shape:
            self._raw = torch.empty(frame.shape, dtype=torch.uint8, device=self.device)
            self._float = torch.empty((1, 3, *frame.shape[:2]), dtype=torch.float32,
                                      device=self.device)
        self._raw.copy_(torch.from_numpy(np.ascontiguousarray(frame)), non_blocking=True)
        assert self._float is not None
        self._float[0].copy_(self._raw.permute(2, 0, 1))
        return self._float


class SubwindowCropper:
    """Device-side square crops with the geometry of :func:`crop_subwindow_numpy`, buffers kept.

    One cropper serves one ``(out_size, count)`` pair: ``count`` crops around one centre (several
    scales) come out of one ``grid_sample`` call as ``(count, C, out, out)``. Pixels outside the
    frame take ``pad_value``: the crop samples the frame with zero padding and adds ``pad_value``
    times the sampling weight that fell outside (separable, in closed form), so no frame-sized
    temporary is made. Resizing is bilinear with half-pixel centres, as ``cv2.resize`` does. The
    sampling grid, weights and window parameters live in buffers allocated once per device and
    dtype; only ``grid_sample``'s output is new each call (served by torch's caching allocator).
    """

    def __init__(self, out_size: int, count: int = 1) -> None:
        self.out_size, self.count = int(out_size), int(count)
        self._key: tuple[torch.device, torch.dtype] | None = None
        self._host = np.zeros((self.count, 3), dtype=np.float64)

    def _allocate(self, device: torch.device, dtype: torch.dtype) -> None:
        count, out = self.count, self.out_size
        self._steps = torch.arange(out, device=device, dtype=dtype) + 0.5
        self._params = torch.empty((count, 3), device=device, dtype=dtype)
        self._pixels = torch.empty((2, count, out), device=device, dtype=dtype)
        self._inside = torch.empty((2, count, out), device=device, dtype=dtype)
        self._spare = torch.empty((2, count, out), device=device, dtype=dtype)
        self._grid = torch.empty((count, out, out, 2), device=device, dtype=dtype)
        self._outside = torch.empty((count, 1, out, out), device=device, dtype=dtype)
        self._key = (device, dtype)

    def __call__(self, frame: torch.Tensor, center: Sequence[float], crop_sizes: Sequence[float],
                 pad_value: torch.Tensor) -> torch.Tensor:
        """``frame (1, C, H, W)`` float, ``pad_value (C,)`` -> ``(count, C, out, out)``."""
        if len(crop_sizes) != self.count:
            raise ValueError(f"cropper made for {self.count} crop(s), got {len(crop_sizes)} sizes")
        _, channels, height, width = frame.shape
        if self._key != (frame.device, frame.dtype):
            self._allocate(frame.device, frame.dtype)
        for i, size in enumerate(crop_sizes):
            xmin, ymin = crop_window(center, size)
            self._host[i] = (round(size) / self.out_size, xmin, ymin)
        self._params.copy_(torch.from_numpy(self._host), non_blocking=False)
        # pixel coordinates of the sample points: corner + (i + 0.5) * scale - 0.5, per axis
        torch.mul(self._steps, self._params[:, 0:1], out=self._pixels[0])
        self._pixels[0].sub_(0.5)
        torch.add(self._pixels[0], self._params[:, 2:3], out=self._pixels[1])
        self._pixels[0].add_(self._params[:, 1:2])
        self._weights_inside(width, height)
        self._fill_grid(width, height)
        patch = F.grid_sample(frame.expand(self.count, channels, height, width), self._grid,
                              mode="bilinear", padding_mode="zeros", align_corners=False)
        torch.mul(self._inside[1][:, :, None], self._inside[0][:, None, :], out=self._outside[:, 0])
        self._outside.neg_().add_(1.0)
        return patch.addcmul_(pad_value.to(frame.dtype).view(1, -1, 1, 1), self._outside)

    def _weights_inside(self, width: int, height: int) -> None:
        """Bilinear weight a sample puts on in-frame pixels: clamp(min(p + 1, size - p), 0, 1)."""
        for axis, size in enumerate((width, height)):
            torch.add(self._pixels[axis], 1.0, out=self._inside[axis])
            torch.sub(size, self._pixels[axis], out=self._spare[axis])
            torch.minimum(self._inside[axis], self._spare[axis], out=self._inside[axis])
        self._inside.clamp_(0.0, 1.0)

    def _fill_grid(self, width: int, height: int) -> None:
        """Normalised ``grid_sample`` coordinates (align_corners=False): (2p + 1) / size - 1."""
        count, out = self.count, self.out_size
        for axis, size in enumerate((width, height)):
            torch.mul(self._pixels[axis], 2.0 / size, out=self._spare[axis])
            self._spare[axis].add_(1.0 / size - 1.0)
        self._grid[..., 0].copy_(self._spare[0][:, None, :].expand(count, out, out))
        self._grid[..., 1].copy_(self._spare[1][:, :, None].expand(count, out, out))


class CropperCache:
    """Croppers by ``(out_size, count)``, made on first use: a tracker's steady state allocates none."""

    def __init__(self) -> None:
        self._croppers: dict[tuple[int, int], SubwindowCropper] = {}

    def __call__(self, frame: torch.Tensor, center: Sequence[float], crop_size: float | Sequence[float],
                 out_size: int, pad_value: torch.Tensor) -> torch.Tensor:
        """One crop (``crop_size`` a number) or several around one centre (a sequence)."""
        sizes = [float(crop_size)] if np.ndim(crop_size) == 0 else [float(v) for v in crop_size]
        key = (int(out_size), len(sizes))
        cropper = self._croppers.get(key)
        if cropper is None:
            cropper = self._croppers[key] = SubwindowCropper(*key)
        return cropper(frame, center, sizes, pad_value)


def crop_subwindow(frame: torch.Tensor, center: Sequence[float], crop_size: float, out_size: int,
                   pad_value: torch.Tensor) -> torch.Tensor:
    """One device-side crop, ``(1, C, H, W)`` -> ``(1, C, out, out)`` (see :class:`SubwindowCropper`;
    trackers keep a :class:`CropperCache` instead of calling this every frame)."""
    return SubwindowCropper(out_size)(frame, center, [crop_size], pad_value)


def box_in_frame(cx: float, cy: float, w: float, h: float,
                 frame_shape: Sequence[int]) -> tuple[float, float, float, float]:
    """The part of the centre/size box that lies inside the frame, as ``(x, y, w, h)``."""
    height, width = frame_shape[:2]
    x1, y1 = min(max(cx - w / 2, 0.0), width), min(max(cy - h / 2, 0.0), height)
    x2, y2 = min(max(cx + w / 2, 0.0), width), min(max(cy + h / 2, 0.0), height)
    return x1, y1, x2 - x1, y2 - y1


def frame_mean(frame: torch.Tensor) -> torch.Tensor:
    """Per-channel mean of a ``(1, C, H, W)`` frame, the usual border padding value."""
    return frame.mean(dim=(0, 2, 3))


def mask_to_polygon(mask: np.ndarray, threshold: float = 0.5) -> np.ndarray | None:
    """Minimum-area rotated rectangle around the largest blob of ``mask``; ``(4, 2)`` or None."""
    binary = (mask > threshold * (255 if mask.dtype == np.uint8 else 1)).astype(np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    largest = max(contours, key=cv2.contourArea)
    if cv2.contourArea(largest) < 1.0:
        return None
    return cv2.boxPoints(cv2.minAreaRect(largest)).astype(np.float32)
