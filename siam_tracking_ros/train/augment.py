"""Crop a training patch around a target with random shift/scale, and photometric augmentation.

Geometry follows the trackers: the exemplar region is ``sqrt((w + p)(h + p))`` with
``p = context (w + h)`` resized to ``exemplar_size``; a search patch of ``instance_size`` covers
the same scale, ``instance_size / exemplar_size`` times wider. The returned box is the target in
patch pixels and follows every geometric transform.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from siam_tracking_ros.core.geometry import context_size


@dataclass
class AugmentSpec:
    """Probabilities/amplitudes of each augmentation (0 disables it)."""

    #: max centre shift in patch pixels
    shift: float = 0.0
    #: max relative scale change per axis (aspect changes too)
    scale: float = 0.0
    #: probability of a blur; of blurs, ``motion_blur`` is the share that are motion blur
    blur: float = 0.0
    motion_blur: float = 0.5
    #: probability of colour jitter (brightness, contrast, saturation, channel gains)
    color: float = 0.0
    gray: float = 0.0
    flip: float = 0.0


@dataclass
class Patch:
    """An augmented crop: image (uint8 BGR), target box in patch pixels, optional mask."""

    image: np.ndarray
    box: np.ndarray
    mask: np.ndarray | None = None


def crop_affine(box: np.ndarray, out_size: int, region_scale: float, spec: AugmentSpec,
                rng: np.random.Generator, context: float = 0.5) -> np.ndarray:
    """The 2x3 affine map from source pixels to a patch around ``box`` with random shift/scale.

    ``region_scale`` is ``out_size / exemplar_size`` (1 for a template, ~2 for a search patch).
    """
    cx, cy = box[0] + box[2] / 2.0, box[1] + box[3] / 2.0
    side = context_size(box[2], box[3], context) * region_scale
    sx = sy = side
    if spec.scale > 0:
        sx *= 1.0 + rng.uniform(-spec.scale, spec.scale)
        sy *= 1.0 + rng.uniform(-spec.scale, spec.scale)
    kx, ky = out_size / sx, out_size / sy
    dx = rng.uniform(-spec.shift, spec.shift) if spec.shift > 0 else 0.0
    dy = rng.uniform(-spec.shift, spec.shift) if spec.shift > 0 else 0.0
    # the target centre lands at patch centre + (dx, dy)
    tx = out_size / 2.0 + dx - cx * kx
    ty = out_size / 2.0 + dy - cy * ky
    return np.array([[kx, 0.0, tx], [0.0, ky, ty]], dtype=np.float64)


def map_box(box: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Apply an axis-aligned affine map to an ``xywh`` box."""
    kx, ky = affine[0, 0], affine[1, 1]
    return np.array([box[0] * kx + affine[0, 2], box[1] * ky + affine[1, 2], box[2] * kx, box[3] * ky])


def make_patch(image: np.ndarray, box: np.ndarray, out_size: int, region_scale: float,
               spec: AugmentSpec, rng: np.random.Generator, mask: np.ndarray | None = None,
               context: float = 0.5) -> Patch:
    """Crop + geometric + photometric augmentation; pads with the image's mean colour."""
    affine = crop_affine(np.asarray(box, dtype=np.float64), out_size, region_scale, spec, rng, context)
    mean = [float(v) for v in image.reshape(-1, 3).mean(axis=0)]
    patch = cv2.warpAffine(image, affine, (out_size, out_size), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=mean)
    new_box = map_box(box, affine)
    if mask is not None:
        mask = cv2.warpAffine(mask, affine, (out_size, out_size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    patch = photometric(patch, spec, rng)
    if spec.flip > 0 and rng.random() < spec.flip:
        patch, new_box, mask = hflip(patch, new_box, mask)
    return Patch(patch, new_box, mask)


def hflip(image: np.ndarray, box: np.ndarray, mask: np.ndarray | None = None
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Mirror a patch left-right with its box (and mask)."""
    width = image.shape[1]
    flipped = np.array([width - box[0] - box[2], box[1], box[2], box[3]])
    return (np.ascontiguousarray(image[:, ::-1]), flipped,
            None if mask is None else np.ascontiguousarray(mask[:, ::-1]))


def photometric(image: np.ndarray, spec: AugmentSpec, rng: np.random.Generator) -> np.ndarray:
    """Colour jitter, grayscale and blur (each with its probability)."""
    if spec.color > 0 and rng.random() < spec.color:
        image = color_jitter(image, rng)
    if spec.gray > 0 and rng.random() < spec.gray:
        image = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    if spec.blur > 0 and rng.random() < spec.blur:
        image = motion_blur(image, rng) if rng.random() < spec.motion_blur else gaussian_blur(image, rng)
    return image


def color_jitter(image: np.ndarray, rng: np.random.Generator, amount: float = 0.2) -> np.ndarray:
    """Random brightness, contrast, saturation and per-channel gain."""
    out = image.astype(np.float32)
    gray = out.mean(axis=2, keepdims=True)
    out = gray + (out - gray) * rng.uniform(1 - amount, 1 + amount)  # saturation
    out = out.mean() + (out - out.mean()) * rng.uniform(1 - amount, 1 + amount)  # contrast
    out = out * rng.uniform(1 - amount / 2, 1 + amount / 2, size=3) + rng.uniform(-20, 20)
    return np.clip(out, 0, 255).astype(np.uint8)


def gaussian_blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur with a random sigma of 0.5..2 px."""
    return cv2.GaussianBlur(image, (0, 0), sigmaX=float(rng.uniform(0.5, 2.0)))


def motion_blur_kernel(length: int, angle_deg: float) -> np.ndarray:
    """A normalised line kernel of ``length`` px at ``angle_deg``."""
    kernel = np.zeros((length, length), dtype=np.float32)
    kernel[length // 2, :] = 1.0
    rotation = cv2.getRotationMatrix2D(((length - 1) / 2.0, (length - 1) / 2.0), angle_deg, 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (length, length))
    return kernel / max(float(kernel.sum()), 1e-6)


def motion_blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Linear motion blur, 5..15 px at a random angle."""
    length = int(rng.integers(2, 8)) * 2 + 1
    return cv2.filter2D(image, -1, motion_blur_kernel(length, float(rng.uniform(0, 180))))
