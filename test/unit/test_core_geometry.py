"""Crops with border padding (device vs numpy reference), penalties and windows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from siam_tracking_ros.core.geometry import (
    CropperCache,
    FrameUploader,
    SubwindowCropper,
    context_size,
    cosine_window,
    crop_subwindow,
    crop_subwindow_numpy,
    crop_window,
    scale_ratio_penalty,
)


def textured_frame(height: int = 60, width: int = 80, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


CROP_CASES = [
    # centre, crop size, out size: inside, every border and corner, beyond the frame, up/down-scaling
    ((40.0, 30.0), 21.0, 21),
    ((2.0, 3.0), 31.0, 31),
    ((78.5, 58.2), 25.4, 25),
    ((-5.0, 30.0), 30.0, 15),
    ((40.0, 70.0), 44.0, 88),
    ((0.0, 0.0), 127.0, 64),
    ((79.0, 0.0), 9.0, 27),
]


@pytest.mark.parametrize(("center", "crop_size", "out_size"), CROP_CASES)
def test_crop_subwindow_matches_numpy_reference(center: tuple[float, float], crop_size: float,
                                                out_size: int) -> None:
    frame = textured_frame()
    pad = frame.reshape(-1, 3).mean(axis=0)
    reference = crop_subwindow_numpy(frame, center, crop_size, out_size, pad)
    image = FrameUploader(torch.device("cpu"))(frame)
    ours = crop_subwindow(image, center, crop_size, out_size, torch.from_numpy(pad).float())
    ours_np = ours[0].permute(1, 2, 0).numpy()
    assert ours_np.shape == reference.shape == (out_size, out_size, 3)
    # When upscaling, output pixels whose sample point lies within half a source pixel outside the
    # cut window differ by design: cv2 replicates the window's edge, grid_sample blends with the
    # real neighbour. Compare where the sample point lies inside the window.
    side = round(crop_size)
    sample = (np.arange(out_size) + 0.5) * side / out_size - 0.5
    inside = (sample >= 0) & (sample <= side - 1)
    diff = np.abs(ours_np - reference)[inside][:, inside]
    assert inside.sum() >= out_size - 2
    # same geometry; cv2 rounds weights (and the uint8 pad value), so allow ~1 grey level
    assert diff.max() <= 1.5
    assert diff.mean() < 0.5


def test_crop_pads_with_value_outside_frame() -> None:
    frame = np.full((20, 20, 3), 200, dtype=np.uint8)
    image = FrameUploader(torch.device("cpu"))(frame)
    pad = torch.tensor([10.0, 20.0, 30.0])
    crop = crop_subwindow(image, (0.0, 0.0), 20.0, 20, pad)
    # top-left quadrant lies outside the frame: padded; bottom-right inside: the frame value
    torch.testing.assert_close(crop[0, :, 2, 2], pad)
    torch.testing.assert_close(crop[0, :, 15, 15], torch.full((3,), 200.0))


def test_multiscale_crop_equals_single_crops() -> None:
    frame = textured_frame(seed=3)
    image = FrameUploader(torch.device("cpu"))(frame)
    pad = torch.tensor([1.0, 2.0, 3.0])
    sizes = [40.0 * 1.0375 ** e for e in (-1, 0, 1)]
    cropper = SubwindowCropper(31, count=3)
    for center in [(40.0, 30.0), (3.0, 57.0)]:
        batch = cropper(image, center, sizes, pad)
        assert batch.shape == (3, 3, 31, 31)
        for i, size in enumerate(sizes):
            torch.testing.assert_close(batch[i:i + 1], crop_subwindow(image, center, size, 31, pad))


@pytest.mark.parametrize(("center", "crop_size", "out_size"), CROP_CASES)
def test_closed_form_padding_equals_sampling_the_padded_frame(center: tuple[float, float],
                                                              crop_size: float, out_size: int) -> None:
    """Reference: sample (frame - pad) with zero padding, add pad back (a frame-sized temporary)."""
    frame = textured_frame(seed=5)
    image = FrameUploader(torch.device("cpu"))(frame).double()
    pad = torch.tensor([17.0, 99.0, 230.0], dtype=torch.float64)
    _, _, height, width = image.shape
    xmin, ymin = crop_window(center, crop_size)
    steps = (torch.arange(out_size, dtype=torch.float64) + 0.5) * round(crop_size) / out_size - 0.5
    xs, ys = (2 * (xmin + steps) + 1) / width - 1, (2 * (ymin + steps) + 1) / height - 1
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1)[None]
    shifted = image - pad.view(1, 3, 1, 1)
    reference = torch.nn.functional.grid_sample(shifted, grid, align_corners=False) + pad.view(1, 3, 1, 1)
    torch.testing.assert_close(crop_subwindow(image, center, crop_size, out_size, pad), reference)


def test_cropper_keeps_its_buffers_between_frames() -> None:
    crop = CropperCache()
    pad = torch.zeros(3)
    image = FrameUploader(torch.device("cpu"))(textured_frame())
    first = crop(image, (30.0, 30.0), 20.0, 16, pad)
    cropper = next(iter(crop._croppers.values()))
    grid_ptr = cropper._grid.data_ptr()
    second = crop(image, (33.5, 28.0), np.float32(22.0), 16, pad)
    assert len(crop._croppers) == 1 and cropper._grid.data_ptr() == grid_ptr
    assert not torch.equal(first, second)
    with pytest.raises(ValueError, match="made for 1 crop"):
        cropper(image, (30.0, 30.0), [20.0, 21.0], pad)


def test_scale_ratio_penalty_hand_worked() -> None:
    k = 0.1
    # same size and ratio: no penalty
    assert scale_ratio_penalty(np.array([10.0]), np.array([10.0]), 10.0, 10.0, k)[0] == pytest.approx(1.0)
    # twice the size: padded sizes 40 vs 20 -> s_c = 2, r_c = 1 -> exp(-k)
    assert scale_ratio_penalty(np.array([20.0]), np.array([20.0]), 10.0, 10.0, k)[0] == pytest.approx(
        math.exp(-k))
    # half the size penalises the same (max(r, 1/r))
    assert scale_ratio_penalty(np.array([5.0]), np.array([5.0]), 10.0, 10.0, k)[0] == pytest.approx(
        math.exp(-k))
    # aspect 2:1 against 1:1 with equal padded size: r_c = 2 ... s_c from padded sizes
    w, h = np.array([20.0]), np.array([10.0])
    pad = 15.0
    s_c = math.sqrt((20 + pad) * (10 + pad)) / 20.0
    s_c = max(s_c, 1 / s_c)
    assert scale_ratio_penalty(w, h, 10.0, 10.0, k)[0] == pytest.approx(math.exp(-k * (2 * s_c - 1)))


def test_context_size_and_window() -> None:
    # w=40, h=20, context 0.5 -> pad 30 -> sqrt(70 * 50)
    assert context_size(40.0, 20.0, 0.5) == pytest.approx(math.sqrt(70 * 50))
    window = cosine_window(5)
    np.testing.assert_allclose(window, np.outer(np.hanning(5), np.hanning(5)), rtol=1e-6)
    assert window[2, 2] == pytest.approx(1.0) and window[0, 0] == 0.0
