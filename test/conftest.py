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


# --- skips that would hide failures in CI -------------------------------------------------------
#: the skips a CI run accepts (substring of the skip reason -> why it is a property of the machine);
#: with CI=true any other skip fails the run, so a broken build or a missing data folder cannot turn
#: tests into green skips. README "Tests" lists these.
CI_ALLOWED_SKIPS = {
    "CUDA": "GPU tests on a machine without CUDA, and CPU-only checks on one with it",
    "launch_pytest needs a ROS 2 install": "launch_pytest is not on PyPI",
    "launch_ros needs a ROS 2 install": "launch_ros is not on PyPI",
    "clear_refs is not writable": "the kernel or container forbids resetting the peak RSS",
}
_unexpected_skips: list[tuple[str, str]] = []


def ci_mode() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def unexpected_skip(report) -> str | None:
    """The reason of ``report``'s skip when it is not on :data:`CI_ALLOWED_SKIPS` (xfails are not skips)."""
    if not report.skipped or hasattr(report, "wasxfail"):
        return None
    reason = skip_reason(report)
    return None if any(allowed in reason for allowed in CI_ALLOWED_SKIPS) else reason


def _note(report) -> None:
    reason = unexpected_skip(report) if ci_mode() else None
    if reason is not None:
        _unexpected_skips.append((report.nodeid, reason))


def pytest_runtest_logreport(report) -> None:
    _note(report)


def pytest_collectreport(report) -> None:
    _note(report)  # a module-level importorskip skips a whole file at collection


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if _unexpected_skips:
        terminalreporter.write_sep("=", f"{len(_unexpected_skips)} unexpected skips with CI=true", red=True)
        for nodeid, reason in _unexpected_skips:
            terminalreporter.write_line(f"{nodeid}: {reason}")
        terminalreporter.write_line("allowed (test/conftest.py CI_ALLOWED_SKIPS): "
                                    + "; ".join(CI_ALLOWED_SKIPS))


def pytest_sessionfinish(session, exitstatus) -> None:
    if _unexpected_skips and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
