"""Launch files compile and declare their arguments (no launch packages needed)."""

from __future__ import annotations

import py_compile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=[p.name for p in LAUNCH_FILES])
def test_launch_file_compiles(path: Path) -> None:
    py_compile.compile(str(path), doraise=True)
    assert "def generate_launch_description" in path.read_text()


def test_launch_arguments_documented() -> None:
    text = (ROOT / "launch" / "tracker.launch.py").read_text()
    for argument in ("tracker", "image", "device", "params_file", "weights"):
        assert f'DeclareLaunchArgument("{argument}"' in text or f'"{argument}",' in text, argument
