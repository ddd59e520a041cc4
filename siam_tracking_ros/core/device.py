"""Device selection shared by trackers, training and the node."""

from __future__ import annotations

import torch


class DeviceError(ValueError):
    """Raised when a requested device cannot be used on this machine."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``auto|cpu|cuda|cuda:N`` into a usable :class:`torch.device`.

    ``auto`` picks CUDA when available. Asking for CUDA without a GPU raises :class:`DeviceError`
    with a message saying so, instead of failing later inside a kernel.
    """
    if isinstance(device, torch.device):
        device = str(device)
    text = (device or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device '{device}' requested but CUDA is not available on this machine")
        index = 0 if text == "cuda" else _parse_index(text)
        if index >= torch.cuda.device_count():
            raise DeviceError(
                f"device '{device}' requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        return torch.device("cuda", index)
    raise DeviceError(f"unknown device '{device}': use auto, cpu, cuda or cuda:N")


def _parse_index(text: str) -> int:
    try:
        index = int(text.split(":", 1)[1])
    except ValueError as exc:
        raise DeviceError(f"bad CUDA device index in '{text}'") from exc
    if index < 0:
        raise DeviceError(f"bad CUDA device index in '{text}'")
    return index
