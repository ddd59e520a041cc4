"""Model-level benchmark: load time, init latency, per-frame track latency, throughput and memory
of one variant on one device, with N targets tracked at once.

No variant declares :class:`~siam_tracking_ros.core.capabilities.BatchedTargets` yet (the
``batched`` column says whether the one benchmarked does), so N targets are N independent
trackers that each ``track`` every frame; a frame's latency is the time for all N (crop + network
+ decoding per target), with a CUDA synchronisation before each clock reading.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from siam_tracking_ros.bench.memory import (
    cuda_peak_mib,
    cuda_reset_peak,
    peak_rss_mib,
    reset_peak_rss,
    rss_mib,
)
from siam_tracking_ros.core.capabilities import BatchedTargets
from siam_tracking_ros.data.sequences import Sequence
from siam_tracking_ros.eval import factory
from siam_tracking_ros.eval.runner import synchronizer


@dataclass
class ModelBenchResult:
    """Numbers of one (variant, device, targets) run; times in milliseconds."""

    tracker: str
    device: str
    weights: str | None
    targets: int
    half: bool
    cuda_graphs: bool
    batched: bool
    resolution: str
    #: what ran the network: ``torch``, ``onnxruntime`` (``onnxruntime+torch``: a pass fell back),
    #: or ``opencv`` for the OpenCV baselines
    backend: str
    threads: int
    frames: int
    load_ms: float
    init_ms: float
    track_p50_ms: float
    track_p95_ms: float
    track_p99_ms: float
    track_mean_ms: float
    fps: float
    target_fps: float
    rss_mib: float | None
    peak_rss_mib: float | None
    cuda_peak_mib: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_frames(sequence: Sequence, count: int, resolution: tuple[int, int] | None
                ) -> tuple[list[np.ndarray], np.ndarray]:
    """The first ``count`` frames (resized to ``resolution`` = (W, H) if given) and the first box."""
    frames = [sequence.frame(i) for i in range(min(count, len(sequence)))]
    box = sequence.boxes[sequence.first_valid()].copy()
    if resolution is not None:
        height, width = frames[0].shape[:2]
        sx, sy = resolution[0] / width, resolution[1] / height
        frames = [cv2.resize(f, resolution, interpolation=cv2.INTER_LINEAR) for f in frames]
        box *= np.array([sx, sy, sx, sy])
    return frames, box


def bench_model(request: factory.TrackerRequest, frames: list[np.ndarray], box: np.ndarray,
                device: str = "cpu", targets: int = 1, warmup: int = 5, init_repeats: int = 5,
                nano_paths: tuple[str | None, str | None] = (None, None), half: bool = False,
                cuda_graphs: bool = False, backend: str = "torch", threads: int = 0) -> ModelBenchResult:
    """Measure one variant. Raises what the tracker builder raises (e.g. missing weights).

    ``half`` and ``cuda_graphs`` switch on fp16 and graph replay of the search pass (CUDA only;
    the row records whether the tracker actually runs that way). ``backend`` and ``threads`` go to
    ``tracker.use_backend`` (variants only); ONNX exports and sessions are made on first use, in
    the first init and warm-up frames, outside the reported medians and track times.
    """
    reset_peak_rss()
    torch.manual_seed(0)  # random weights: the same network in every row (and one ONNX export)
    start = time.perf_counter()
    trackers = [_configure(factory.build(request, device, *nano_paths), half, cuda_graphs, backend, threads)
                for _ in range(targets)]
    load_s = (time.perf_counter() - start) / targets
    torch_device = getattr(trackers[0], "device", torch.device("cpu"))
    sync = synchronizer(trackers[0])
    cuda_reset_peak(torch_device)

    init_times = []
    for _ in range(init_repeats):
        start = time.perf_counter()
        for tracker in trackers:
            tracker.init(frames[0], box)
        sync()
        init_times.append((time.perf_counter() - start) / targets)

    sequence = frames[1:]
    for frame in sequence[:warmup]:
        for tracker in trackers:
            tracker.track(frame)
    sync()
    for tracker in trackers:
        tracker.init(frames[0], box)
    times = np.empty(len(sequence))
    for index, frame in enumerate(sequence):
        start = time.perf_counter()
        for tracker in trackers:
            tracker.track(frame)
        sync()
        times[index] = time.perf_counter() - start
    ms = times * 1e3
    height, width = frames[0].shape[:2]
    return ModelBenchResult(
        tracker=request.name, device=str(torch_device), weights=request.weights, targets=targets,
        half=getattr(trackers[0], "dtype", torch.float32) == torch.float16,
        cuda_graphs=bool(getattr(getattr(trackers[0], "search_pass", None), "replays", 0)),
        batched=isinstance(trackers[0], BatchedTargets), resolution=f"{width}x{height}",
        backend=backend_label(trackers[0]), threads=threads, frames=len(sequence),
        load_ms=load_s * 1e3, init_ms=float(np.median(init_times) * 1e3),
        track_p50_ms=float(np.percentile(ms, 50)), track_p95_ms=float(np.percentile(ms, 95)),
        track_p99_ms=float(np.percentile(ms, 99)), track_mean_ms=float(ms.mean()),
        fps=float(len(sequence) / times.sum()), target_fps=float(targets * len(sequence) / times.sum()),
        rss_mib=rss_mib(), peak_rss_mib=peak_rss_mib(), cuda_peak_mib=cuda_peak_mib(torch_device))


def _configure(tracker: Any, half: bool, cuda_graphs: bool, backend: str = "torch", threads: int = 0) -> Any:
    if half and hasattr(tracker, "half"):
        tracker.half()
    if cuda_graphs and hasattr(tracker, "use_cuda_graphs"):
        tracker.use_cuda_graphs()
    if hasattr(tracker, "use_backend"):
        tracker.use_backend(backend, threads)
    return tracker


def backend_label(tracker: Any) -> str:
    """``tracker.backend`` (``+torch`` when an ONNX pass fell back to torch), ``opencv`` for baselines."""
    backend = getattr(tracker, "backend", None)
    if backend is None:
        return "opencv"
    passes = (getattr(tracker, "template_pass", None), getattr(tracker, "search_pass", None))
    fell_back = any(getattr(p, "fallback_calls", 0) for p in passes)
    return f"{backend}+torch" if backend == "onnxruntime" and fell_back else backend


def default_sequence_dir() -> Path:
    """A shared real sequence for frames, when the checkout has ../shared."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sequences" / "otb_Car1"
