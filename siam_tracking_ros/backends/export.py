"""Export of one network pass to ONNX, cached on disk by a fingerprint of the network.

A pass is a method of an ``nn.Module`` (``template`` or ``search``) called with a nest of tensors
and constants (see :func:`~siam_tracking_ros.core.static_graph.flatten_tensors`). Its export
takes the flattened tensors as inputs ``i0, i1, ...`` and gives the flattened outputs as ``o0,
o1, ...``. The file name is a hash of everything the graph depends on: the weights (bytes of every
parameter and buffer), the module structure (``repr``) and the plain attributes of its submodules
(scales, flags that tracing bakes in), the network source code, the call signature (shapes,
dtypes, constants), the exporter's version and opset, and an ``extra`` string (the tracker
config). Files are written atomically, so concurrent processes may share the cache.

Cache folder: ``$SIAM_ONNX_CACHE`` if set, else ``$XDG_CACHE_HOME/siam_tracking_ros/onnx`` (default
``~/.cache/...``), else a folder under the system temp dir when that is not writable.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from siam_tracking_ros.core.static_graph import flatten_tensors, rebuild

#: default size bound of the export cache (random-weight networks make a new export per build)
DEFAULT_CACHE_MB = 4096
#: bump when the export wrapper or its input/output naming changes
EXPORT_FORMAT = 1
OPSET = 17
_PLAIN = (bool, int, float, str, type(None))
_SOURCE_PACKAGES = ("siam_tracking_ros.models", "siam_tracking_ros.trackers", "siam_tracking_ros.core")


def cache_dir() -> Path:
    """The folder exported files go to (created); see the module docstring for the order."""
    explicit = os.environ.get("SIAM_ONNX_CACHE")
    candidates = [Path(explicit)] if explicit else []
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    candidates += [Path(base) / "siam_tracking_ros" / "onnx",
                   Path(tempfile.gettempdir()) / f"siam_tracking_ros_onnx_{os.getuid()}"]
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return folder
    raise OSError(f"no writable folder for ONNX exports among {[str(c) for c in candidates]}")


def prune_cache(folder: Path, keep: Path | None = None, max_bytes: int | None = None) -> None:
    """Delete the least recently used exports in ``folder`` until they total at most ``max_bytes``
    (default ``$SIAM_ONNX_CACHE_MAX_MB``, else :data:`DEFAULT_CACHE_MB`); ``keep`` is never deleted."""
    if max_bytes is None:
        max_bytes = int(float(os.environ.get("SIAM_ONNX_CACHE_MAX_MB", DEFAULT_CACHE_MB)) * 2**20)
    files = []
    for path in folder.glob("*.onnx"):
        try:
            stat = path.stat()
        except OSError:
            continue
        files.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in files)
    for _, size, path in sorted(files):
        if total <= max_bytes:
            break
        if keep is not None and path == keep:
            continue
        try:
            path.unlink()
            total -= size
        except OSError:
            pass


def _plain_attributes(module: nn.Module) -> list[tuple[str, Any]]:
    items = []
    for name, sub in module.named_modules():
        for key, value in sorted(vars(sub).items()):
            if key.startswith("_") or key == "training":
                continue
            if isinstance(value, _PLAIN) or (isinstance(value, tuple | list)
                                             and all(isinstance(v, _PLAIN) for v in value)):
                items.append((f"{name}.{key}", value))
    return items


def source_digest() -> str:
    """Digest of the loaded network code (``siam_tracking_ros.models``/``.trackers`` modules), so a
    code change makes new exports; recomputed when another such module gets imported."""
    names = tuple(sorted(n for n in sys.modules if n.startswith(_SOURCE_PACKAGES)))
    return _source_digest(names)


@functools.lru_cache(maxsize=8)
def _source_digest(names: tuple[str, ...]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for name in names:
        path = getattr(sys.modules.get(name), "__file__", None)
        if path and os.path.isfile(path):
            digest.update(name.encode())
            digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def module_fingerprint(module: nn.Module, extra: str = "") -> str:
    """Hex digest of the weights, structure and plain attributes of ``module``, the network code
    (:func:`source_digest`) and ``extra``."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{EXPORT_FORMAT}|{OPSET}|{torch.__version__}|{type(module).__qualname__}|".encode())
    digest.update(source_digest().encode())
    digest.update(repr(module).encode())
    digest.update(repr(_plain_attributes(module)).encode())
    digest.update(extra.encode())
    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            flat = tensor.detach().to("cpu").contiguous().reshape(-1)
            digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            if flat.numel():
                digest.update(flat.view(torch.uint8).numpy().data)
    return digest.hexdigest()


class _FlatPass(nn.Module):
    """``fn`` with the tensors of its call nest as positional inputs and flat outputs."""

    def __init__(self, owner: nn.Module, fn: Callable[..., Any], in_spec: Any) -> None:
        super().__init__()
        self.owner = owner  # registers the weights with the exporter
        self.fn = fn
        self.in_spec = in_spec
        self.out_spec: Any = None

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        args, kwargs = rebuild(self.in_spec, list(tensors))
        outputs, self.out_spec = flatten_tensors(self.fn(*args, **kwargs))
        return tuple(outputs)


def export_pass(owner: nn.Module, fn: Callable[..., Any], in_spec: Any, example: list[torch.Tensor],
                path: Path) -> None:
    """Export ``fn`` (a method of ``owner``) called as ``rebuild(in_spec, example)`` to ``path``.

    Runs the legacy TorchScript exporter (constant folding on) outside inference mode, on clones
    of the example tensors, and writes the file atomically.
    """
    wrapper = _FlatPass(owner, fn, in_spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.stem, suffix=".onnx.tmp", dir=path.parent)
    os.close(fd)
    was_training = owner.training
    owner.eval()
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inputs = tuple(t.detach().clone() for t in example)
            torch.onnx.export(wrapper, inputs, tmp, input_names=[f"i{k}" for k in range(len(inputs))],
                              opset_version=OPSET, do_constant_folding=True, dynamo=False)
        os.replace(tmp, path)
    finally:
        owner.train(was_training)
        if os.path.exists(tmp):
            os.unlink(tmp)
