"""Inference backends for a tracker's network passes: PyTorch (reference, training, CUDA) or ONNX
Runtime (CPU).

A tracker runs its network through two callables, ``tracker.template_pass(z)`` (once per target)
and ``tracker.search_pass(features, x)`` (every frame). :meth:`SiameseTracker.use_backend
<siam_tracking_ros.trackers.base.SiameseTracker.use_backend>` points them at the torch module or at
:class:`~siam_tracking_ros.backends.ort.OrtPass` objects, which export each pass to ONNX once per
input signature (cached on disk, see :mod:`~siam_tracking_ros.backends.export`) and run it with
inputs bound in place and preallocated outputs.

``auto`` picks ONNX Runtime on the CPU for variants whose search pass has static shapes
(``supports_cuda_graphs``), and torch elsewhere (CUDA, dynamic-shape variants).
"""

from __future__ import annotations

import importlib.util

import torch

#: accepted backend names (``backend`` node parameter, ``siam-bench --backend``)
BACKENDS = ("auto", "torch", "onnxruntime")


def onnxruntime_available() -> bool:
    """Whether the ``onnxruntime`` package can be imported."""
    return importlib.util.find_spec("onnxruntime") is not None


def resolve_backend(name: str, device: torch.device | str, static_shapes: bool) -> str:
    """The backend ``name`` means for a network on ``device``: ``torch`` or ``onnxruntime``.

    ``auto`` is ``onnxruntime`` on the CPU when the search pass has static shapes and
    onnxruntime is installed, ``torch`` otherwise. Raises ``ValueError`` for unknown names and
    for ``onnxruntime`` on a non-CPU device.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend '{name}'; known: {', '.join(BACKENDS)}")
    device_type = torch.device(device).type
    if name == "auto":
        usable = device_type == "cpu" and static_shapes and onnxruntime_available()
        return "onnxruntime" if usable else "torch"
    if name == "onnxruntime":
        if device_type != "cpu":
            raise ValueError(f"the onnxruntime backend runs on the CPU; this tracker is on {device_type} "
                             "(build it with device='cpu' or use backend 'torch')")
        if not onnxruntime_available():
            raise ValueError("backend 'onnxruntime' needs the onnxruntime package (pip install onnxruntime)")
    return name


def set_torch_threads(threads: int) -> None:
    """``torch.set_num_threads(threads)`` for ``threads >= 1``; 0 leaves torch's setting alone."""
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0 = library default), got {threads}")
    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
