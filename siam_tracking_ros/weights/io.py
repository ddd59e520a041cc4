"""Project weight format (safetensors + config in its metadata) and safe checkpoint loading.

A project file is a ``.safetensors`` whose metadata holds ``variant`` and ``config`` (JSON of the
variant's config dataclass). Official checkpoints (``.pth``/``.model``) are read only with
``torch.load(weights_only=True)`` and mapped to our parameter names by the variant's importer.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

FORMAT_VERSION = "1"


class WeightsError(ValueError):
    """A weights file is missing, unreadable, unsafe or made for another variant."""


def save_weights(path: str | Path, state_dict: Mapping[str, torch.Tensor], variant: str,
                 config: Any, half: bool = False, extra: Mapping[str, str] | None = None) -> Path:
    """Write ``state_dict`` as a project ``.safetensors`` file tagged with ``variant`` and ``config``.

    ``half`` stores floating tensors as fp16 (they are cast back to the model's dtype on load).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for key, value in state_dict.items():
        value = value.detach().cpu()
        if half and value.is_floating_point():
            value = value.half()
        tensors[key] = value.contiguous()
    config_dict = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    metadata = {"format": FORMAT_VERSION, "variant": variant, "config": json.dumps(config_dict)}
    metadata.update(extra or {})
    save_file(tensors, str(path), metadata=metadata)
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    """Metadata of a project file (``variant``, ``config`` JSON, ...)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"cannot read weights '{path}': {exc}") from exc


def load_project_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a project ``.safetensors`` file."""
    metadata = read_metadata(path)
    try:
        return load_file(str(path)), metadata
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"cannot read weights '{path}': {exc}") from exc


def _numpy_scalar_globals() -> list:
    """Numpy scalar reconstruction and numeric dtypes: data only, no code execution.

    Official checkpoints (NanoTrack's, for one) store bookkeeping such as the epoch as numpy
    scalars, which the weights-only unpickler refuses unless these are allowed.
    """
    import numpy as np
    from numpy._core.multiarray import scalar

    dtypes = [np.dtypes.Float64DType, np.dtypes.Float32DType, np.dtypes.Int64DType, np.dtypes.Int32DType]
    return [(scalar, "numpy.core.multiarray.scalar"), np.dtype, *dtypes]


def load_checkpoint_safely(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an official PyTorch checkpoint with ``weights_only=True`` and unwrap its state dict.

    Accepts a bare state dict or ``{"state_dict"|"model"|"net": ...}``; strips ``module.``.
    Anything that needs arbitrary unpickling is refused.
    """
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise WeightsError(f"weights file not found: '{path}'") from exc
    except Exception as exc:  # torch raises many types for unsafe or corrupt files
        raise WeightsError(
            f"refused to load '{path}': not a plain tensor checkpoint that loads with "
            f"weights_only=True ({type(exc).__name__}: {(str(exc).splitlines() or ['no detail'])[0][:200]})"
        ) from exc
    for key in ("state_dict", "model", "net"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"'{path}' holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_state_into(model: nn.Module, state: Mapping[str, torch.Tensor], variant: str) -> None:
    """``model.load_state_dict(state, strict=True)`` with shapes checked and a clear message."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(part for part in (
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}" if missing else "",
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}" if unexpected else "",
            f"wrong shape {wrong[:5]}" if wrong else "") if part)
        raise WeightsError(f"weights do not fit the '{variant}' network: {detail}")
    converted = {k: v.to(own[k].dtype) for k, v in state.items()}
    model.load_state_dict(converted, strict=True)


def add_missing_bn_counters(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A copy of ``state`` with ``num_batches_tracked`` (0) added for every batch norm lacking it.

    Checkpoints saved before PyTorch 0.4.1 (e.g. DaSiamRPN's, SiamMask's) have no such buffers.
    """
    out = dict(state)
    for key in [k for k in state if k.endswith(".running_mean")]:
        counter = key.removesuffix("running_mean") + "num_batches_tracked"
        out.setdefault(counter, torch.zeros((), dtype=torch.long))
    return out
