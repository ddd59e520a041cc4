"""CPU crops for the ONNX Runtime path: ``cv2.warpAffine`` straight into a float32 NCHW input.

:class:`WarpCropper` makes the crop of
:class:`~siam_tracking_ros.core.geometry.SubwindowCropper` (square window of side
``round(crop_size)`` with corner :func:`~siam_tracking_ros.core.geometry.crop_window`, bilinear
resize with half-pixel centres, pixels outside the frame = ``pad``) on the host. Only the frame
pixels the crop can sample (its window plus a two-pixel margin, clipped to the frame) are converted
to float planes, into a buffer kept per frame shape; each channel plane is then warped into its
slice of a ``(1, 3, S, S)`` float32 array kept per output size, which the ONNX session reads in
place. Steady-state tracking allocates nothing but array views.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from siam_tracking_ros.core.geometry import crop_window

_FLAGS = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
#: frame pixels beyond the crop window converted, so that bilinear taps at its edge are real pixels
_MARGIN = 2


class WarpCropper:
    """Square crops of HxWx3 uint8 frames into kept ``(1, 3, S, S)`` float32 arrays (see module)."""

    def __init__(self) -> None:
        self._planes: np.ndarray | None = None
        self._outputs: dict[int, tuple[np.ndarray, torch.Tensor]] = {}
        self._matrix = np.zeros((2, 3), dtype=np.float64)

    def output(self, out_size: int) -> tuple[np.ndarray, torch.Tensor]:
        """The kept ``(1, 3, out_size, out_size)`` array and the tensor sharing its memory."""
        entry = self._outputs.get(out_size)
        if entry is None:
            array = np.zeros((1, 3, out_size, out_size), dtype=np.float32)
            with torch.inference_mode(False):
                entry = self._outputs[out_size] = (array, torch.from_numpy(array))
        return entry

    def __call__(self, frame: np.ndarray, center: Sequence[float], crop_size: float, out_size: int,
                 pad: Sequence[float]) -> torch.Tensor:
        """Crop around ``center`` (continuous coordinates, as ``crop_window``) -> ``(1, 3, S, S)``.

        The returned tensor is overwritten by the next crop of the same ``out_size``.
        """
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 BGR frame, got {frame.dtype} {frame.shape}")
        height, width = frame.shape[:2]
        side = round(crop_size)
        xmin, ymin = crop_window(center, crop_size)
        scale = side / out_size
        x0, x1 = _clamp(xmin - _MARGIN, width), _clamp(xmin + side + _MARGIN, width)
        y0, y1 = _clamp(ymin - _MARGIN, height), _clamp(ymin + side + _MARGIN, height)
        array, tensor = self.output(out_size)
        if x1 <= x0 or y1 <= y0:  # the window misses the frame: all border
            for channel in range(3):
                array[0, channel].fill(pad[channel])
            return tensor
        planes = self._planes_for(height, width)
        np.copyto(planes[:, y0:y1, x0:x1], frame[y0:y1, x0:x1].transpose(2, 0, 1))
        matrix = self._matrix
        matrix[0, 0] = matrix[1, 1] = scale
        matrix[0, 2] = xmin + 0.5 * scale - 0.5 - x0
        matrix[1, 2] = ymin + 0.5 * scale - 0.5 - y0
        for channel in range(3):
            cv2.warpAffine(planes[channel, y0:y1, x0:x1], matrix, (out_size, out_size),
                           dst=array[0, channel], flags=_FLAGS, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=float(pad[channel]))
        return tensor

    def _planes_for(self, height: int, width: int) -> np.ndarray:
        if self._planes is None or self._planes.shape[1:] != (height, width):
            self._planes = np.empty((3, height, width), dtype=np.float32)
        return self._planes


def _clamp(value: float, size: int) -> int:
    return int(min(max(math.floor(value), 0), size))
