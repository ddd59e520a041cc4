"""Static-shape network passes replayed as CUDA graphs.

A tracker's per-frame search pass has fixed shapes (one crop size, one template), so it can be
captured once as a CUDA graph and replayed: one launch instead of dozens of kernel launches, which
is most of the cost of small networks on a fast GPU. :class:`StaticGraph` wraps such a function.
Each distinct signature (nesting, shapes, dtypes, devices, non-tensor arguments) gets its own
graph with its own static input buffers; a call copies its tensors into those buffers, replays,
and returns the graph's static outputs. Those outputs are overwritten by the next call: consume
(decode, copy) them before calling again, as the trackers do.

On a device other than CUDA the wrapper calls the function directly, unless ``emulate=True``: then
it runs the same static-buffer protocol eagerly (copy in, run on the buffers, copy out), which
lets CPU tests check that a tracker gives the same results through the graph path. If capture
fails (an operation that cannot be captured), a warning says so and the function runs eagerly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


def flatten_tensors(tree: Any) -> tuple[list[torch.Tensor], Any]:
    """Tensors of a nest of tuples / lists / dicts, and a hashable spec to rebuild it."""
    tensors: list[torch.Tensor] = []

    def walk(node: Any) -> Any:
        if isinstance(node, torch.Tensor):
            tensors.append(node)
            return ("T", tuple(node.shape), node.dtype, str(node.device))
        if isinstance(node, tuple | list):
            return (type(node).__name__, tuple(walk(item) for item in node))
        if isinstance(node, dict):
            return ("dict", tuple((key, walk(node[key])) for key in node))
        return ("C", node)  # plain constants (flags, numbers) are part of the signature

    spec = walk(tree)
    return tensors, spec


def rebuild(spec: Any, tensors: list[torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_tensors` with ``tensors`` put in the leaves, in order."""
    feed = iter(tensors)

    def build(node: Any) -> Any:
        kind = node[0]
        if kind == "T":
            return next(feed)
        if kind == "C":
            return node[1]
        if kind == "dict":
            return {key: build(value) for key, value in node[1]}
        items = [build(item) for item in node[1]]
        return tuple(items) if kind == "tuple" else items

    return build(spec)


@dataclass
class _Captured:
    inputs: list[torch.Tensor]
    outputs: Any
    replay: Callable[[], None]


class StaticGraph:
    """``fn(*args, **kwargs)`` replayed from a CUDA graph per call signature (see module docs).

    Args:
        fn: the pass to capture; it must not synchronise with the host (no ``.item()``, no
            data-dependent shapes).
        enabled: False makes the wrapper a plain call.
        emulate: on non-CUDA devices, run the static-buffer protocol eagerly (tests).
        warmup: eager runs on a side stream before capture (lets cuDNN pick its algorithms).
    """

    def __init__(self, fn: Callable[..., Any], enabled: bool = True, emulate: bool = False,
                 warmup: int = 2) -> None:
        self.fn, self.enabled, self.emulate, self.warmup = fn, enabled, emulate, warmup
        self._graphs: dict[Any, _Captured] = {}
        self.replays = 0

    @property
    def captured(self) -> int:
        """How many signatures have a graph (or an emulated one)."""
        return len(self._graphs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.enabled:
            return self.fn(*args, **kwargs)
        tensors, spec = flatten_tensors((args, kwargs))
        devices = {t.device.type for t in tensors}
        if devices != {"cuda"} and not self.emulate:
            return self.fn(*args, **kwargs)
        entry = self._graphs.get(spec)
        if entry is None:
            entry = self._capture(spec, tensors)
            if entry is None:
                return self.fn(*args, **kwargs)
            self._graphs[spec] = entry
        for static, live in zip(entry.inputs, tensors, strict=True):
            if static.data_ptr() != live.data_ptr():
                static.copy_(live)
        entry.replay()
        self.replays += 1
        return entry.outputs

    def _capture(self, spec: Any, tensors: list[torch.Tensor]) -> _Captured | None:
        inputs = [t.detach().clone() for t in tensors]
        args, kwargs = rebuild(spec, inputs)
        if tensors[0].device.type != "cuda":
            return self._emulated(args, kwargs, inputs)
        try:
            return self._cuda_graph(args, kwargs, inputs, tensors[0].device)
        except RuntimeError as exc:  # capture-unsafe op: fall back for good, loudly
            warnings.warn(f"CUDA graph capture failed ({exc}); running this pass eagerly",
                          RuntimeWarning, stacklevel=3)
            self.enabled = False
            return None

    def _cuda_graph(self, args: Any, kwargs: Any, inputs: list[torch.Tensor],
                    device: torch.device) -> _Captured:
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self.fn(*args, **kwargs)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = self.fn(*args, **kwargs)
        return _Captured(inputs, outputs, graph.replay)

    def _emulated(self, args: Any, kwargs: Any, inputs: list[torch.Tensor]) -> _Captured:
        first = self.fn(*args, **kwargs)
        outputs_flat, out_spec = flatten_tensors(first)
        static_out = [t.detach().clone() for t in outputs_flat]

        def replay() -> None:
            fresh, _ = flatten_tensors(self.fn(*args, **kwargs))
            for static, value in zip(static_out, fresh, strict=True):
                static.copy_(value)

        return _Captured(inputs, rebuild(out_spec, static_out), replay)
