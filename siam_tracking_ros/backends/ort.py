"""Network passes run by ONNX Runtime on the CPU with inputs bound in place and preallocated outputs.

:class:`OrtPass` wraps a module method like :class:`~siam_tracking_ros.core.static_graph.StaticGraph`
does: each call signature (nesting, shapes, dtypes, constants) gets its own ONNX export (cached on
disk, :func:`~siam_tracking_ros.backends.export.export_pass`) and its own session. A call binds the
ONNX inputs to the memory of the tensors it was given (no copy; rebinding only when a tensor's
address changes), runs, and returns the session's output tensors, which wrap buffers allocated
once per signature: like graph outputs they are overwritten by the next call, so consume them
first (``copy_outputs=True`` returns fresh tensors instead, for template features that live on).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from siam_tracking_ros.backends.export import cache_dir, export_pass, prune_cache
from siam_tracking_ros.core.static_graph import flatten_tensors, rebuild

_MISSING = object()


def session_options(threads: int = 0, spinning: bool = False) -> Any:
    """ORT session options: ``threads`` intra-op threads (0 = ORT's default), one inter-op thread,
    sequential execution, all graph optimisations; ``spinning`` lets idle pool threads spin (off:
    on a small shared CPU spinning pool threads starve the caller; measured 2.4x slower p50 with
    2 threads on a loaded 2-core machine)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return options


@dataclass
class _Entry:
    """One signature: its session, binding, input slots and output buffers."""

    session: Any
    binding: Any
    #: (position in the flattened call, ONNX input name, numpy dtype) of the inputs the graph uses
    slots: list[tuple[int, str, Any]]
    outputs: list[torch.Tensor]
    out_spec: Any
    nest: Any
    bound: list[int] = field(default_factory=list)


class OrtPass:
    """``fn(*args, **kwargs)`` (a method of ``owner``) run by ONNX Runtime (see module docs).

    Args:
        owner: the module whose weights the pass uses (exported with it).
        fn: the pass, e.g. ``owner.search``.
        fingerprint: :func:`~siam_tracking_ros.backends.export.module_fingerprint` of ``owner``
            (and config); with the signature it names the cached file.
        threads: intra-op threads (0 = ORT's default).
        copy_outputs: return fresh output tensors instead of the session's reused buffers.
        folder: cache folder (default :func:`~siam_tracking_ros.backends.export.cache_dir`).
        spinning: let ORT's idle pool threads spin between calls (see :func:`session_options`).
    """

    def __init__(self, owner: nn.Module, fn: Callable[..., Any], fingerprint: str, threads: int = 0,
                 copy_outputs: bool = False, folder: Path | None = None, spinning: bool = False) -> None:
        self.owner, self.fn, self.fingerprint = owner, fn, fingerprint
        self.threads, self.copy_outputs, self.spinning = int(threads), copy_outputs, spinning
        self.folder = folder
        self.name = getattr(fn, "__name__", "pass")
        self._entries: dict[Any, _Entry | None] = {}
        #: calls run by ORT, and by torch for signatures whose export failed
        self.calls = 0
        self.fallback_calls = 0

    @property
    def sessions(self) -> int:
        """How many signatures have a session."""
        return sum(entry is not None for entry in self._entries.values())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        tensors, spec = flatten_tensors((args, kwargs))
        entry = self._entries.get(spec, _MISSING)
        if entry is _MISSING:
            entry = self._entries[spec] = self._build_or_fall_back(spec, tensors)
        if entry is None:  # this signature could not be exported: eager torch
            self.fallback_calls += 1
            return self.fn(*args, **kwargs)
        keep = self._bind(entry, tensors)
        entry.session.run_with_iobinding(entry.binding)
        del keep
        self.calls += 1
        if self.copy_outputs:
            return rebuild(entry.out_spec, [t.clone() for t in entry.outputs])
        return entry.nest

    def _bind(self, entry: _Entry, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Point the ONNX inputs at the tensors' memory; returns temporaries to keep alive."""
        keep = []
        for slot, (position, name, dtype) in enumerate(entry.slots):
            tensor = tensors[position]
            if tensor.device.type != "cpu":
                raise ValueError(f"{self.name}: onnxruntime inputs must be on the CPU, got {tensor.device}")
            if not tensor.is_contiguous():
                tensor = tensor.contiguous()
                keep.append(tensor)
            pointer = tensor.data_ptr()
            if entry.bound[slot] != pointer:
                entry.binding.bind_input(name, "cpu", 0, dtype, tuple(tensor.shape), pointer)
                entry.bound[slot] = pointer
        return keep

    def _build_or_fall_back(self, spec: Any, tensors: list[torch.Tensor]) -> _Entry | None:
        try:
            return self._build(spec, tensors)
        except Exception as exc:  # an op the exporter or ORT cannot handle: torch for this signature
            message = str(exc).strip().splitlines()
            warnings.warn(f"{self.name}: ONNX export/session failed ({type(exc).__name__}: "
                          f"{message[0][:200] if message else ''}); this pass runs in torch",
                          RuntimeWarning, stacklevel=3)
            return None

    def _build(self, spec: Any, tensors: list[torch.Tensor]) -> _Entry:
        import onnxruntime as ort

        digest = hashlib.blake2b(repr(spec).encode(), digest_size=8).hexdigest()
        path = (self.folder or cache_dir()) / f"{self.name}-{self.fingerprint}-{digest}.onnx"
        if path.is_file():
            os.utime(path)  # recently used: pruned last
        else:
            export_pass(self.owner, self.fn, spec, tensors, path)
            prune_cache(path.parent, keep=path)
        session = ort.InferenceSession(str(path), sess_options=session_options(self.threads, self.spinning),
                                       providers=["CPUExecutionProvider"])
        # the eager pass once: output nesting, shapes and dtypes
        args, kwargs = rebuild(spec, tensors)
        reference, out_spec = flatten_tensors(self.fn(*args, **kwargs))
        onnx_outputs = session.get_outputs()
        if len(onnx_outputs) != len(reference):
            raise RuntimeError(f"{self.name}: the export has {len(onnx_outputs)} outputs, the pass "
                               f"{len(reference)}; delete {path}")
        binding = session.io_binding()
        by_name: dict[str, torch.Tensor] = {}
        outputs = []
        for node, expected in zip(onnx_outputs, reference, strict=True):
            if tuple(node.shape) != tuple(expected.shape):
                raise RuntimeError(f"{self.name}: output {node.name} has shape {node.shape} in the export, "
                                   f"{tuple(expected.shape)} in torch")
            buffer = by_name.get(node.name)
            if buffer is None:  # a tensor returned twice is one graph output: one buffer for both
                with torch.inference_mode(False):
                    buffer = by_name[node.name] = torch.empty(expected.shape, dtype=expected.dtype)
                binding.bind_output(node.name, "cpu", 0, _numpy_dtype(expected.dtype), tuple(expected.shape),
                                    buffer.data_ptr())
            outputs.append(buffer)
        slots = []
        for node in session.get_inputs():
            position = int(node.name[1:])
            slots.append((position, node.name, _numpy_dtype(tensors[position].dtype)))
        return _Entry(session, binding, slots, outputs, out_spec, rebuild(out_spec, outputs),
                      bound=[0] * len(slots))


def _numpy_dtype(dtype: torch.dtype) -> Any:
    """The numpy dtype of a torch dtype."""
    with torch.inference_mode(False):
        return torch.empty(0, dtype=dtype).numpy().dtype
