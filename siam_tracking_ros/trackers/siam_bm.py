"""SiamBM (He et al., ECCV-W 2018): SiamFC with angle estimation and aspect-ratio feature masks.

Per frame the tracker scores ``M + N - 1`` search patches, changing one property at a time: the
``M`` scales at the current angle and the ``N - 1`` other angles at the current scale. The
template features are masked when the target is elongated (aspect ratio above 1.5): rows (wide
target) or columns (tall target) outside the target's extent are zeroed. The template is updated
by a moving average with a small rate. The output carries the rotated box as a polygon.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from siam_tracking_ros.core.result import TrackResult
from siam_tracking_ros.trackers.registry import register_tracker
from siam_tracking_ros.trackers.siamfc import SiamFCConfig, SiamFCNet, SiamFCTracker

# ---------------------------------------------------------------- geometry


def search_candidates(scale_factors: Sequence[float], angle_deltas: Sequence[float]
                      ) -> list[tuple[float, float]]:
    """``(scale factor, angle delta)`` pairs: every scale at delta 0, every other angle at scale 1.

    ``scale_factors`` must contain 1 and ``angle_deltas`` 0; the result has ``M + N - 1`` entries,
    each differing from ``(1, 0)`` in at most one property.
    """
    if not any(math.isclose(s, 1.0) for s in scale_factors):
        raise ValueError(f"scale factors {list(scale_factors)} must include 1")
    if not any(math.isclose(a, 0.0, abs_tol=1e-12) for a in angle_deltas):
        raise ValueError(f"angle deltas {list(angle_deltas)} must include 0")
    pairs = [(float(s), 0.0) for s in scale_factors]
    pairs += [(1.0, float(a)) for a in angle_deltas if not math.isclose(a, 0.0, abs_tol=1e-12)]
    return pairs


def symmetric_geometric_steps(count: int, step: float) -> list[float]:
    """``count`` factors ``step^k`` centred on 1 (``count`` odd), e.g. 3 -> ``[1/s, 1, s]``."""
    half = count // 2
    return [step ** k for k in range(-half, count - half)]


def symmetric_linear_steps(count: int, step: float) -> list[float]:
    """``count`` offsets ``k * step`` centred on 0 (``count`` odd), e.g. 3 -> ``[-s, 0, s]``."""
    half = count // 2
    return [k * step for k in range(-half, count - half)]


def mask_band(size: int, target_w: float, target_h: float, region_side: float,
              threshold: float = 1.5) -> tuple[int, int] | None:
    """``(axis, keep)`` of the aspect-ratio mask, or None when the target is not elongated.

    ``axis`` 0 keeps ``keep`` central rows (wide target, ``w / h > threshold``), 1 keeps central
    columns (tall target). ``keep`` covers the target's short side (``region_side`` is the side
    the feature map covers, in the target's units) and keeps the map's parity so it stays centred.
    """
    ratio = target_w / target_h
    if max(ratio, 1.0 / ratio) <= threshold:
        return None
    short = target_h if ratio > 1.0 else target_w
    keep = min(size, max(1, math.ceil(size * short / region_side)))
    if (size - keep) % 2:
        keep += 1
    return (0 if ratio > 1.0 else 1), min(keep, size)


def band_mask(size: int, band: tuple[int, int] | None) -> torch.Tensor:
    """``(size, size)`` 0/1 mask for a :func:`mask_band` result (all ones for None)."""
    mask = torch.ones(size, size)
    if band is None:
        return mask
    axis, keep = band
    start = (size - keep) // 2
    outside = torch.ones(size, dtype=torch.bool)
    outside[start:start + keep] = False
    if axis == 0:
        mask[outside] = 0.0
    else:
        mask[:, outside] = 0.0
    return mask


def aspect_ratio_mask(size: int, target_w: float, target_h: float, region_side: float,
                      threshold: float = 1.5) -> torch.Tensor:
    """SiamBM's spatial template-feature mask: all ones unless the aspect ratio exceeds ``threshold``,
    then the rows (wide target) or columns (tall target) outside the target's extent are zero."""
    return band_mask(size, mask_band(size, target_w, target_h, region_side, threshold))


def rotated_box_polygon(cx: float, cy: float, w: float, h: float, angle: float) -> np.ndarray:
    """Corners ``(4, 2)`` of a ``w x h`` box centred at ``(cx, cy)`` whose width axis points along
    ``(cos angle, sin angle)`` in image coordinates (y down)."""
    ux, uy = math.cos(angle), math.sin(angle)
    half_w, half_h = w / 2.0, h / 2.0
    corners = [(-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h)]
    return np.array([[cx + a * ux - b * uy, cy + a * uy + b * ux] for a, b in corners],
                    dtype=np.float32)


def rotated_crops(frame: torch.Tensor, center: Sequence[float], sides: torch.Tensor,
                  angles: torch.Tensor, out_size: int, pad_value: torch.Tensor) -> torch.Tensor:
    """Square crops rotated about ``center``, resized to ``out_size``; one per ``(side, angle)``.

    ``frame (1, C, H, W)``; ``center = (cx, cy)`` in continuous source coordinates (pixel ``i``
    covers ``[i, i + 1)``); ``sides``, ``angles`` ``(K,)`` tensors on the frame's device. The crop's
    x axis points along ``(cos a, sin a)`` in the image, so ``angle = 0`` is the axis-aligned crop
    (same sampling as :func:`~siam_tracking_ros.core.geometry.crop_subwindow` up to its integer
    rounding). Outside pixels take ``pad_value (C,)``. Returns ``(K, C, out, out)``.
    """
    _, channels, height, width = frame.shape
    count = sides.shape[0]
    unit = (torch.arange(out_size, device=frame.device, dtype=frame.dtype) + 0.5) / out_size - 0.5
    du = sides.to(frame.dtype)[:, None] * unit[None, :]            # (K, out): offsets along the axes
    cos, sin = torch.cos(angles).to(frame.dtype), torch.sin(angles).to(frame.dtype)
    u = du[:, None, :]                                              # varies along output columns
    v = du[:, :, None]                                              # varies along output rows
    xs = center[0] - 0.5 + u * cos[:, None, None] - v * sin[:, None, None]
    ys = center[1] - 0.5 + u * sin[:, None, None] + v * cos[:, None, None]
    grid = torch.stack(((2.0 * xs + 1.0) / width - 1.0, (2.0 * ys + 1.0) / height - 1.0), dim=-1)
    pad = pad_value.to(frame.dtype).view(1, -1, 1, 1)
    source = (frame - pad).expand(count, channels, height, width)
    patches = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return patches + pad


# ---------------------------------------------------------------- tracker


@dataclass
class SiamBMConfig(SiamFCConfig):
    """SiamFC options and hyper-parameters plus angle search, masks and template update.

    ``scale_num``/``scale_step`` give the ``M`` scales; ``angle_num``/``angle_step`` the ``N`` angles.
    """

    angle_num: int = 3
    #: radians between neighbouring angle candidates (π/8)
    angle_step: float = math.pi / 8
    #: multiplies the peak of every rotated candidate (as ``scale_penalty`` does for scales)
    angle_penalty: float = 0.9745
    #: fraction of the winning angle change applied to the state
    angle_lr: float = 1.0
    #: aspect ratio above which the template features are masked
    mask_ratio: float = 1.5
    #: moving-average rate of the template update; 0 disables it
    template_lr: float = 0.01


class SiamBMTracker(SiamFCTracker):
    """SiamFC with ``M + N - 1`` scale/angle candidates, feature masks and template update."""

    config: SiamBMConfig

    def __init__(self, model: SiamFCNet, config: SiamBMConfig, device: torch.device) -> None:
        super().__init__(model, config, device)
        angles = symmetric_linear_steps(config.angle_num, config.angle_step)
        self.candidates = search_candidates(list(self.scale_factors), angles)
        penalties = [1.0 if s == 1.0 and a == 0.0 else
                     (config.angle_penalty if a != 0.0 else config.scale_penalty) for s, a in self.candidates]
        self._penalties = torch.tensor(penalties, dtype=torch.float32, device=self.device)
        self._factors = torch.tensor([s for s, _ in self.candidates], dtype=torch.float32, device=self.device)
        self._deltas = torch.tensor([a for _, a in self.candidates], dtype=torch.float32, device=self.device)
        self._masks: dict[tuple[int, int] | None, torch.Tensor] = {}
        self._template: torch.Tensor | None = None
        self._exemplar_side = torch.zeros(1, device=self.device)
        self._exemplar_angle = torch.zeros(1, device=self.device)

    def _init(self, frame: np.ndarray, box: tuple[float, ...]) -> None:
        super()._init(frame, box)
        self.angle = 0.0
        self._template = self._kernel
        self._kernel = torch.empty_like(self._template)
        self.refresh_kernel()

    def refresh_kernel(self) -> None:
        """``kernel = template ⊙ mask(current aspect ratio)`` into the kernel buffer."""
        assert self._template is not None and self._kernel is not None
        size = self._template.shape[-1]
        band = mask_band(size, float(self.target_sz[0]), float(self.target_sz[1]), self.z_sz,
                         self.config.mask_ratio)
        if band not in self._masks:
            self._masks[band] = band_mask(size, band).to(self.device, self._template.dtype)
        torch.mul(self._template, self._masks[band], out=self._kernel)

    def search_crops(self, image: torch.Tensor) -> torch.Tensor:
        """Rotated search crops of the ``M + N - 1`` scale/angle candidates."""
        sides = self._factors * float(self.x_sz)
        angles = self._deltas + float(self.angle)
        return rotated_crops(image, self.center, sides, angles, self.config.instance_size, self.avg_color)

    def _track(self, frame: np.ndarray) -> TrackResult:
        cfg = self.config
        index, row, col, peak = self.locate(self.responses(frame))
        factor, delta = self.candidates[index]
        du, dv = self.peak_offset(row, col, factor)
        angle = self.angle + delta
        self.center = self.center + np.array([du * math.cos(angle) - dv * math.sin(angle),
                                              du * math.sin(angle) + dv * math.cos(angle)])
        self.rescale(factor)
        self.angle = math.remainder(self.angle + cfg.angle_lr * delta, 2 * math.pi)
        cx, cy, w, h = self.clip_state(frame.shape)
        if cfg.template_lr > 0:
            self.update_template(frame)
        else:
            self.refresh_kernel()
        polygon = rotated_box_polygon(cx, cy, w, h, self.angle)
        return TrackResult(polygon_box_in_frame(polygon, frame.shape), self.presence_score(peak),
                           polygon=polygon,
                           extra={"raw_score": peak, "scale": factor, "angle": self.angle})

    def update_template(self, frame: np.ndarray) -> None:
        """``template <- (1 - lr) template + lr * features(rotated exemplar crop)``, then re-mask."""
        assert self._template is not None
        cfg = self.config
        self._exemplar_side.fill_(float(self.z_sz))
        self._exemplar_angle.fill_(float(self.angle))
        z = rotated_crops(self.upload(frame), self.center, self._exemplar_side, self._exemplar_angle,
                          cfg.exemplar_size, self.avg_color)
        fresh = self.model.template(z.to(self.dtype))
        self._template.mul_(1.0 - cfg.template_lr).add_(fresh, alpha=cfg.template_lr)
        self.refresh_kernel()


def polygon_box_in_frame(polygon: np.ndarray, frame_shape: Sequence[int]
                         ) -> tuple[float, float, float, float]:
    """Axis-aligned ``(x, y, w, h)`` around ``polygon``, clipped to the frame."""
    height, width = frame_shape[:2]
    x1, y1 = np.clip(polygon.min(axis=0), 0, [width, height])
    x2, y2 = np.clip(polygon.max(axis=0), 0, [width, height])
    return float(x1), float(y1), float(x2 - x1), float(y2 - y1)


@register_tracker("siam_bm", SiamBMConfig,
                  description="SiamBM: SiamFC with angle estimation, aspect-ratio feature masks, "
                              "template update")
def build_siam_bm(config: SiamBMConfig, device: torch.device) -> SiamBMTracker:
    """Build a :class:`SiamBMTracker` around an untrained :class:`SiamFCNet`."""
    return SiamBMTracker(SiamFCNet(config), config, device)
