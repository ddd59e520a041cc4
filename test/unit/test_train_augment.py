"""Augmentation: the box follows every geometric transform; photometric ones keep it."""

from __future__ import annotations

import numpy as np
import pytest

from siam_tracking_ros.train.augment import (
    AugmentSpec,
    hflip,
    make_patch,
    motion_blur_kernel,
    photometric,
)

BOX = np.array([120.0, 60.0, 50.0, 30.0])
COLOUR = (0, 0, 255)


def _scene() -> np.ndarray:
    image = np.full((240, 320, 3), 90, dtype=np.uint8)
    x, y, w, h = BOX.astype(int)
    image[y:y + h, x:x + w] = COLOUR
    return image


def _assert_box_covers_rectangle(patch: np.ndarray, box: np.ndarray) -> None:
    x, y, w, h = box
    inner = patch[int(np.ceil(y + 2)):int(y + h - 2), int(np.ceil(x + 2)):int(x + w - 2)]
    assert inner.size > 0
    assert (inner[..., 2] > 200).all() and (inner[..., 0] < 50).all()
    outer_rows = [int(np.floor(y - 3)), int(np.ceil(y + h + 2))]
    outer_cols = [int(np.floor(x - 3)), int(np.ceil(x + w + 2))]
    for r in outer_rows:
        if 0 <= r < patch.shape[0]:
            row = patch[r, max(int(x), 0):min(int(x + w), patch.shape[1])]
            assert (row[..., 2] < 150).all()
    for c in outer_cols:
        if 0 <= c < patch.shape[1]:
            col = patch[max(int(y), 0):min(int(y + h), patch.shape[0]), c]
            assert (col[..., 2] < 150).all()


def test_template_patch_without_augmentation_is_centred_and_scaled() -> None:
    patch = make_patch(_scene(), BOX, 127, 1.0, AugmentSpec(), np.random.default_rng(0))
    s_z = np.sqrt((50 + 40) * (30 + 40))
    scale = 127 / s_z
    np.testing.assert_allclose(patch.box[:2] + patch.box[2:] / 2, [63.5, 63.5], atol=1e-9)
    np.testing.assert_allclose(patch.box[2:], BOX[2:] * scale)
    _assert_box_covers_rectangle(patch.image, patch.box)


@pytest.mark.parametrize("seed", range(6))
def test_box_follows_shift_scale_and_flip(seed: int) -> None:
    spec = AugmentSpec(shift=40, scale=0.2, flip=0.5)
    patch = make_patch(_scene(), BOX, 255, 255 / 127, spec, np.random.default_rng(seed))
    _assert_box_covers_rectangle(patch.image, patch.box)
    centre = patch.box[:2] + patch.box[2:] / 2
    assert np.all(np.abs(centre - 127.5) <= 40 + 1e-6)


def test_hflip_maps_box_and_mask() -> None:
    image = _scene()
    mask = np.zeros(image.shape[:2], np.float32)
    x, y, w, h = BOX.astype(int)
    mask[y:y + h, x:x + w] = 1
    flipped, box, fmask = hflip(image, BOX, mask)
    _assert_box_covers_rectangle(flipped, box)
    assert box[0] == pytest.approx(320 - 120 - 50)
    assert fmask[int(box[1]) + 1, int(box[0]) + 1] == 1


def test_mask_follows_the_crop() -> None:
    image = _scene()
    mask = np.zeros(image.shape[:2], np.float32)
    x, y, w, h = BOX.astype(int)
    mask[y:y + h, x:x + w] = 1
    patch = make_patch(image, BOX, 255, 2.0, AugmentSpec(shift=20, scale=0.1), np.random.default_rng(3), mask)
    bx, by, bw, bh = patch.box
    assert patch.mask[int(by + bh / 2), int(bx + bw / 2)] > 0.99
    assert patch.mask.sum() == pytest.approx(bw * bh, rel=0.1)


def test_motion_blur_kernel_is_a_normalised_line() -> None:
    kernel = motion_blur_kernel(9, 0.0)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-5)
    assert (kernel[4] > 0).sum() == 9 and kernel[0].sum() == 0
    vertical = motion_blur_kernel(9, 90.0)
    assert vertical[:, 4].sum() == pytest.approx(1.0, abs=1e-3)


def test_photometric_gray_and_blur() -> None:
    rng = np.random.default_rng(0)
    image = _scene()
    gray = photometric(image, AugmentSpec(gray=1.0), rng)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    blurred = photometric(image, AugmentSpec(blur=1.0, motion_blur=1.0), rng)
    assert blurred.shape == image.shape and not np.array_equal(blurred, image)
    jittered = photometric(image, AugmentSpec(color=1.0), rng)
    assert jittered.dtype == np.uint8 and not np.array_equal(jittered, image)
