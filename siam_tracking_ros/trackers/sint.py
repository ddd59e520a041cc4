"""SINT (Tao et al., CVPR 2016): match the first-frame target against radially sampled candidates.

Per frame: candidate boxes on circles around the previous centre (``radial_steps`` radii x
``angular_steps`` angles, plus the centre) at three scales (√2/2, 1, √2 of the previous size);
candidates that cover fewer than ``flow_min_coverage`` of the previous box's points propagated
by pyramidal Lucas-Kanade optical flow are dropped; the rest are embedded with RoI pooling
(:class:`~siam_tracking_ros.models.heads.roi_embedding.SINTNet`) and the one most similar
(cosine) to the first-frame target wins; its box is refined by the ridge box regressor fitted
on the first frame. No model update, as in the paper.

**Search radius (our choice).** The paper samples within a fixed radius around the previous
location; here ``radius = search_radius x`` the frame width (``radius_reference="frame"``) or
x the previous box's longer side (``"target"``), default 0.3 of the frame width.
**Score.** The cosine similarity of the winner, clipped to 0..1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from siam_tracking_ros.core.geometry import crop_window, frame_mean
from siam_tracking_ros.core.result import TrackResult
from siam_tracking_ros.models.heads.roi_embedding import RidgeBoxRegressor, SINTNet
from siam_tracking_ros.trackers.base import SiameseTracker
from siam_tracking_ros.trackers.registry import register_tracker

SQRT_HALF = math.sqrt(0.5)


@dataclass
class SINTConfig:
    """Architecture options and tracking hyper-parameters of SINT."""

    #: channels of the five VGG-style blocks (paper: VGG16 64-128-256-512-512; lighter default)
    widths: tuple[int, ...] = (16, 32, 64, 128, 128)
    convs: tuple[int, ...] = (1, 1, 2, 2, 2)
    pool_size: int = 7
    fc_dim: int = 256
    #: RoI pooling: ``align`` (RoIAlign) or ``max`` (Fast R-CNN RoI max pooling)
    pooling: str = "align"
    #: side of the resized search crop the network sees
    search_size: int = 224
    search_radius: float = 0.3
    #: ``frame`` (radius = search_radius x frame width) or ``target`` (x the box's longer side)
    radius_reference: str = "frame"
    radial_steps: int = 10
    angular_steps: int = 10
    scales: tuple[float, ...] = (SQRT_HALF, 1.0, math.sqrt(2.0))
    use_flow: bool = True
    flow_min_coverage: float = 0.25
    flow_grid: int = 10
    use_regression: bool = True
    ridge_lambda: float = 1.0
    regression_samples: int = 64
    min_size: float = 10.0


def radial_offsets(radius: float, radial_steps: int, angular_steps: int) -> np.ndarray:
    """Centre offsets ``(1 + radial_steps * angular_steps, 2)``: the centre, then rings of
    radius ``radius * i / radial_steps`` at angles ``2π j / angular_steps``."""
    radii = radius * np.arange(1, radial_steps + 1) / radial_steps
    angles = 2.0 * np.pi * np.arange(angular_steps) / angular_steps
    ring = np.stack([np.outer(radii, np.cos(angles)).ravel(), np.outer(radii, np.sin(angles)).ravel()], 1)
    return np.vstack([np.zeros((1, 2)), ring])


def candidates_around(center: Sequence[float], size: Sequence[float], offsets: np.ndarray,
                      scales: Sequence[float]) -> np.ndarray:
    """Boxes ``(len(scales) * len(offsets), 4)`` cxcywh at ``center + offsets``, scale-major."""
    centres = offsets + np.asarray(center, dtype=np.float64)
    size = np.asarray(size, dtype=np.float64)
    return np.vstack([np.hstack([centres, np.tile(size * s, (len(centres), 1))]) for s in scales])


def radial_candidates(center: Sequence[float], size: Sequence[float], radius: float,
                      radial_steps: int, angular_steps: int, scales: Sequence[float]) -> np.ndarray:
    """Candidate boxes ``(len(scales) * (1 + R * A), 4)`` cxcywh, scale-major."""
    return candidates_around(center, size, radial_offsets(radius, radial_steps, angular_steps), scales)


def flow_points(box_cxcywh: Sequence[float], grid: int) -> np.ndarray:
    """``grid x grid`` points evenly inside a box, ``(grid * grid, 1, 2)`` float32 (OpenCV layout)."""
    cx, cy, w, h = box_cxcywh
    steps = (np.arange(grid) + 0.5) / grid - 0.5
    xs, ys = np.meshgrid(cx + steps * w, cy + steps * h)
    return np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32).reshape(-1, 1, 2)


def flow_coverage(prev_gray: np.ndarray, gray: np.ndarray, prev_box: Sequence[float],
                  candidates: np.ndarray, grid: int = 10) -> np.ndarray | None:
    """Fraction of the previous box's flow-propagated points inside each candidate (cxcywh).

    None when Lucas-Kanade tracks no point.
    """
    points = flow_points(prev_box, grid)
    moved, status, _ = cv2.calcOpticalFlowPyrLK(prev_gray, gray, points, None, winSize=(15, 15),
                                                maxLevel=2)
    good = moved[status.ravel() == 1].reshape(-1, 2)
    if good.size == 0:
        return None
    half = candidates[:, 2:] / 2.0
    low, high = candidates[:, None, :2] - half[:, None], candidates[:, None, :2] + half[:, None]
    inside = ((good[None] >= low) & (good[None] <= high)).all(axis=2)
    return inside.mean(axis=1)


def flow_filter(prev_gray: np.ndarray, gray: np.ndarray, prev_box: Sequence[float],
                candidates: np.ndarray, min_coverage: float = 0.25, grid: int = 10) -> np.ndarray:
    """Boolean mask of candidates covering at least ``min_coverage`` of the propagated points.

    All True when the flow fails or rejects every candidate (matching decides alone then).
    """
    coverage = flow_coverage(prev_gray, gray, prev_box, candidates, grid)
    if coverage is None:
        return np.ones(len(candidates), dtype=bool)
    keep = coverage >= min_coverage
    return keep if keep.any() else np.ones(len(candidates), dtype=bool)


def jittered_boxes(box: Sequence[float], count: int, seed: int = 0, shift: float = 0.15,
                   log_scale: float = 0.15) -> np.ndarray:
    """``count`` boxes (cxcywh) randomly shifted and rescaled around ``box`` (for the regressor)."""
    rng = np.random.default_rng(seed)
    cx, cy, w, h = box
    out = np.empty((count, 4))
    out[:, 0] = cx + rng.uniform(-shift, shift, count) * w
    out[:, 1] = cy + rng.uniform(-shift, shift, count) * h
    out[:, 2] = w * np.exp(rng.uniform(-log_scale, log_scale, count))
    out[:, 3] = h * np.exp(rng.uniform(-log_scale, log_scale, count))
    return out


class SINTTracker(SiameseTracker):
    """Radial candidate search + optical-flow filter + embedding match + ridge box regression."""

    config: SINTConfig

    def __init__(self, model: SINTNet, config: SINTConfig, device: torch.device) -> None:
        super().__init__(model, config, device)
        self.regressor = RidgeBoxRegressor(config.ridge_lambda)
        #: unit-radius sampling pattern, scaled by the radius every frame
        self._unit_offsets = radial_offsets(1.0, config.radial_steps, config.angular_steps)
        self._template: torch.Tensor | None = None
        self._prev_gray: np.ndarray | None = None
        self._gray: np.ndarray | None = None

    # -- geometry ---------------------------------------------------------------------------
    def radius(self, frame_shape: Sequence[int]) -> float:
        """Search radius in frame pixels for the current state."""
        cfg = self.config
        if cfg.radius_reference == "target":
            return cfg.search_radius * float(max(self.size))
        return cfg.search_radius * float(frame_shape[1])

    def crop_side(self, frame_shape: Sequence[int]) -> float:
        """Side of the square region that holds every candidate of the current state."""
        reach = self.radius(frame_shape) + max(self.config.scales) * float(max(self.size)) / 2.0
        return 2.0 * reach + 2.0

    def _crop(self, image: torch.Tensor,
              frame_shape: Sequence[int]) -> tuple[torch.Tensor, float, float, float]:
        """Search crop around the current centre, its top-left corner and frame->crop scale."""
        side = self.crop_side(frame_shape)
        x0, y0 = crop_window(self.center, side)
        crop = self.crop(image, self.center, side, self.config.search_size, self.avg_color)
        return crop.to(self.dtype), x0, y0, self.config.search_size / round(side)

    @staticmethod
    def _to_crop_corners(boxes: np.ndarray, x0: float, y0: float, scale: float) -> np.ndarray:
        corners = np.hstack([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2])
        return (corners - np.array([x0, y0, x0, y0])) * scale

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, dtype=self.dtype, device=self.device)

    def _gray_of(self, frame: np.ndarray) -> np.ndarray:
        if self._gray is None or self._gray.shape != frame.shape[:2]:
            self._gray = np.empty(frame.shape[:2], dtype=np.uint8)
        cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY, dst=self._gray)
        return self._gray

    def _remember_gray(self, gray: np.ndarray) -> None:
        if self._prev_gray is None or self._prev_gray.shape != gray.shape:
            self._prev_gray = np.empty_like(gray)
        np.copyto(self._prev_gray, gray)

    # -- tracking ---------------------------------------------------------------------------
    def _init(self, frame: np.ndarray, box: tuple[float, ...]) -> None:
        cfg = self.config
        x, y, w, h = box
        self.center = np.array([x + w / 2, y + h / 2])
        self.size = np.array([w, h])
        image = self.upload(frame)
        self.avg_color = frame_mean(image).clone()
        crop, x0, y0, scale = self._crop(image, frame.shape)
        levels = self.model.features(crop)
        target = np.array([[*self.center, w, h]])
        corners = self._tensor(self._to_crop_corners(target, x0, y0, scale))
        self._template = self.model.embedding(levels, corners)
        self.regressor = RidgeBoxRegressor(cfg.ridge_lambda)
        if cfg.use_regression:
            samples = jittered_boxes(target[0], cfg.regression_samples)
            feats = self.model.embedding.regression_features(
                levels, self._tensor(self._to_crop_corners(samples, x0, y0, scale)))
            as_float = {"dtype": torch.float32, "device": self.device}
            self.regressor.fit(feats.float(), torch.as_tensor(samples, **as_float),
                               torch.as_tensor(target[0], **as_float))
        self._remember_gray(self._gray_of(frame))

    def candidates(self, frame_shape: Sequence[int]) -> np.ndarray:
        """Radial candidates (cxcywh, frame pixels) around the current state."""
        offsets = self._unit_offsets * self.radius(frame_shape)
        return candidates_around(self.center, self.size, offsets, self.config.scales)

    def _track(self, frame: np.ndarray) -> TrackResult:
        cfg = self.config
        candidates = self.candidates(frame.shape)
        gray = self._gray_of(frame)
        keep = np.ones(len(candidates), dtype=bool)
        if cfg.use_flow and self._prev_gray is not None:
            keep = flow_filter(self._prev_gray, gray, [*self.center, *self.size], candidates,
                               cfg.flow_min_coverage, cfg.flow_grid)
        kept = candidates[keep]
        image = self.upload(frame)
        crop, x0, y0, scale = self._crop(image, frame.shape)
        levels = self.model.features(crop)
        corners = self._tensor(self._to_crop_corners(kept, x0, y0, scale))
        similarity = self.model.embedding(levels, corners) @ self._template[0]
        best = int(torch.argmax(similarity))
        box = kept[best]
        if cfg.use_regression:
            feats = self.model.embedding.regression_features(levels, corners[best:best + 1])
            refined = self.regressor.predict(feats.float(), torch.as_tensor(
                box[None], dtype=torch.float32, device=self.device))
            box = refined[0].cpu().numpy().astype(np.float64)
        self._update_state(box, frame.shape)
        self._remember_gray(gray)
        score = float(similarity[best].clamp(0.0, 1.0))
        x, y, w, h = self._box_xywh(frame.shape)
        return TrackResult((x, y, w, h), score, extra={"candidates": int(keep.sum()),
                                                        "similarity": float(similarity[best])})

    def _update_state(self, box: np.ndarray, frame_shape: Sequence[int]) -> None:
        height, width = frame_shape[:2]
        self.center = np.clip(box[:2], 0, [width, height])
        self.size = np.clip(box[2:], self.config.min_size, [width, height])

    def _box_xywh(self, frame_shape: Sequence[int]) -> tuple[float, float, float, float]:
        height, width = frame_shape[:2]
        x1, y1 = np.clip(self.center - self.size / 2, 0, [width, height])
        x2, y2 = np.clip(self.center + self.size / 2, 0, [width, height])
        return float(x1), float(y1), float(x2 - x1), float(y2 - y1)

    def reset(self) -> None:
        super().reset()
        self._template = None
        self._prev_gray = None


def build_sint_net(config: SINTConfig) -> SINTNet:
    """The matching network described by ``config``."""
    return SINTNet(tuple(config.widths), tuple(config.convs), config.pool_size, config.fc_dim, config.pooling)


@register_tracker("sint", SINTConfig, description="SINT: radial candidates, RoI embedding match, flow filter")
def build_sint(config: SINTConfig, device: torch.device) -> SINTTracker:
    """Build a :class:`SINTTracker` with an untrained :class:`SINTNet`."""
    return SINTTracker(build_sint_net(config), config, device)
