"""The interface every tracker variant implements."""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from siam_tracking_ros.core.geometry import CropperCache, FrameUploader
from siam_tracking_ros.core.result import TrackResult
from siam_tracking_ros.core.static_graph import StaticGraph


class InvalidBoxError(ValueError):
    """Raised by :meth:`SiameseTracker.init` for a box that cannot be tracked."""


def validate_init_box(box: Sequence[float], frame_shape: Sequence[int]) -> tuple[float, ...]:
    """Check an ``(x, y, w, h)`` init box against a frame; return it as floats or raise.

    Rejects NaN/inf, non-positive sizes and boxes that do not overlap the frame.
    """
    if len(box) != 4:
        raise InvalidBoxError(f"box needs 4 numbers (x, y, w, h), got {len(box)}")
    x, y, w, h = (float(v) for v in box)
    if not all(np.isfinite([x, y, w, h])):
        raise InvalidBoxError(f"box has non-finite values: {(x, y, w, h)}")
    if w <= 0 or h <= 0:
        raise InvalidBoxError(f"box width and height must be positive, got w={w} h={h}")
    height, width = frame_shape[:2]
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise InvalidBoxError(
            f"box {(x, y, w, h)} lies outside the {width}x{height} image")
    return x, y, w, h


class SiameseTracker(ABC):
    """Base class: holds the network, the device and the per-target state.

    Subclasses implement :meth:`_init` and :meth:`_track`. Frames are HxWx3 uint8 BGR arrays;
    boxes are ``(x, y, w, h)`` in source pixels. Template features are computed once in ``init``.
    """

    #: registry name, set by :func:`~siam_tracking_ros.trackers.registry.register_tracker`
    name: str = ""
    #: whether ``track`` returns masks
    produces_mask: bool = False
    #: whether the per-frame network pass goes through ``search_pass`` (CUDA-graph capable)
    supports_cuda_graphs: bool = False

    def __init__(self, model: nn.Module, config: Any, device: torch.device) -> None:
        self.config = config
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.dtype = torch.float32
        self.threads = 0
        self.upload = FrameUploader(self.device)
        #: device-side crops with kept buffers: ``self.crop(image, center, size(s), out_size, pad)``
        self.crop = CropperCache()
        #: the per-frame search pass; :meth:`use_cuda_graphs` makes it replay a captured graph,
        #: :meth:`use_backend` run it in ONNX Runtime
        self.search_pass: Any = StaticGraph(self.model.search, enabled=False)
        #: the template pass (once per target); :meth:`use_backend` may point it at ONNX Runtime
        self.template_pass: Any = self.model.template
        #: ``torch`` or ``onnxruntime``: what runs the network passes (see :meth:`use_backend`)
        self.backend = "torch"
        self._initialized = False

    @property
    def initialized(self) -> bool:
        """True once :meth:`init` succeeded and until :meth:`reset`."""
        return self._initialized

    def half(self) -> SiameseTracker:
        """Run the network in fp16 (CUDA only; a no-op on CPU)."""
        if self.device.type == "cuda":
            self.model.half()
            self.dtype = torch.float16
            self.use_cuda_graphs(self.search_pass.enabled, self.search_pass.emulate)  # new weights
        return self

    def use_cuda_graphs(self, enabled: bool = True, emulate: bool = False) -> SiameseTracker:
        """Replay the search pass from CUDA graphs (one per crop shape), captured on first use.

        Only variants whose search pass has static shapes route it through ``search_pass``
        (``supports_cuda_graphs``); elsewhere, and on CPU, this changes nothing. ``emulate`` runs
        the same static-buffer path on CPU (tests). With the onnxruntime backend it changes nothing.
        """
        if self.backend != "torch":
            return self
        self.search_pass = StaticGraph(self.model.search, enabled=enabled and self.supports_cuda_graphs,
                                       emulate=emulate)
        return self

    def use_backend(self, backend: str = "auto", threads: int = 0) -> SiameseTracker:
        """Run the template and search passes with ``backend`` (``auto|torch|onnxruntime``).

        ``auto`` = onnxruntime on the CPU for variants with static-shape search passes
        (``supports_cuda_graphs``), torch elsewhere; an explicit ``onnxruntime`` for another
        variant warns and stays on torch. ``threads`` (0 = library default) sets ORT's intra-op
        threads, or ``torch.set_num_threads`` (process-wide) for torch. ONNX exports are made on
        first use per input shape and cached on disk (:mod:`siam_tracking_ros.backends`): call
        this after the weights are loaded. :attr:`backend` tells what runs.
        """
        from siam_tracking_ros.backends import resolve_backend, set_torch_threads

        resolved = resolve_backend(backend, self.device, self.supports_cuda_graphs)
        if resolved == "onnxruntime" and not self.supports_cuda_graphs:
            warnings.warn(f"{self.name}: its search pass has no static shapes; staying on torch",
                          RuntimeWarning, stacklevel=2)
            resolved = "torch"
        self.threads = int(threads)
        if resolved == "torch":
            set_torch_threads(self.threads)
            if self.backend != "torch":
                self.search_pass = StaticGraph(self.model.search, enabled=False)
            self.template_pass = self.model.template
        else:
            from siam_tracking_ros.backends.export import module_fingerprint
            from siam_tracking_ros.backends.ort import OrtPass

            fingerprint = module_fingerprint(self.model, repr(self.config))
            self.template_pass = OrtPass(self.model, self.model.template, fingerprint, self.threads,
                                         copy_outputs=True)
            self.search_pass = OrtPass(self.model, self.model.search, fingerprint, self.threads)
        self.backend = resolved
        return self

    @torch.inference_mode()
    def init(self, frame: np.ndarray, box: Sequence[float]) -> None:
        """Start tracking the object in ``box`` of ``frame``."""
        checked = validate_init_box(box, frame.shape)
        self._init(frame, checked)
        self._initialized = True

    @torch.inference_mode()
    def track(self, frame: np.ndarray) -> TrackResult:
        """Locate the target in ``frame``."""
        if not self._initialized:
            raise RuntimeError(f"{self.name}: track() called before init()")
        return self._track(frame)

    def reset(self) -> None:
        """Forget the target."""
        self._initialized = False

    @abstractmethod
    def _init(self, frame: np.ndarray, box: tuple[float, ...]) -> None: ...

    @abstractmethod
    def _track(self, frame: np.ndarray) -> TrackResult: ...
