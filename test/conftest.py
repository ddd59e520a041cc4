"""Shared fixtures: where ../shared lives, and small helpers over its real sequences."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SIAM_SHARED_DIR", ROOT.parent / "shared")).resolve()
SEQUENCES = SHARED / "data" / "sequences"
NANOTRACK_DIR = SHARED / "data" / "weights" / "nanotrack"

# Two cores: keep each test process to one intra-op thread so parallel work stays predictable.
torch.set_num_threads(1)


def shared_available() -> bool:
    return SEQUENCES.is_dir()


requires_shared = pytest.mark.skipif(not shared_available(), reason=f"{SEQUENCES} not present")


@pytest.fixture(scope="session")
def sequences_dir() -> Path:
    if not shared_available():
        pytest.skip(f"{SEQUENCES} not present")
    return SEQUENCES


@pytest.fixture(scope="module")
def crossing(sequences_dir: Path):
    """The real otb_Crossing sequence (120 frames, 360x240)."""
    from siam_tracking_ros.data.sequences import load_otb_sequence

    return load_otb_sequence(sequences_dir / "otb_Crossing")


@pytest.fixture(scope="session")
def nanotrack_dir() -> Path:
    if not NANOTRACK_DIR.is_dir():
        pytest.skip(f"{NANOTRACK_DIR} not present")
    return NANOTRACK_DIR
