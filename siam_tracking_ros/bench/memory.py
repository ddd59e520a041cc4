"""Process memory readings from ``/proc`` (Linux) and CUDA allocator statistics."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import torch


def _status_kib(pid: int | str, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def rss_mib(pid: int | str = "self") -> float | None:
    """Resident set size of ``pid`` in MiB (None where /proc is unavailable)."""
    kib = _status_kib(pid, "VmRSS")
    return None if kib is None else kib / 1024.0


def peak_rss_mib(pid: int | str = "self") -> float | None:
    """High-water mark of the resident set size (``VmHWM``) in MiB."""
    kib = _status_kib(pid, "VmHWM")
    return None if kib is None else kib / 1024.0


def reset_peak_rss() -> bool:
    """Reset this process's ``VmHWM`` to the current RSS (Linux ``clear_refs``); False if not possible."""
    try:
        Path(f"/proc/{os.getpid()}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def cuda_reset_peak(device: torch.device) -> None:
    """Reset the CUDA allocator's peak statistics of ``device`` (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def cuda_peak_mib(device: torch.device) -> float | None:
    """``torch.cuda.max_memory_allocated`` in MiB, None on CPU."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def gpu_process_mib(pid: int) -> float | None:
    """GPU memory used by another process, from ``nvidia-smi`` (None without a GPU or the tool)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        text = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid):
            return float(parts[1])
    return 0.0
