"""setup.py: every executable is a console script that resolves, package data exists (issue 11)."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _setup_values() -> tuple[list[str], list[str]]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    scripts: list[str] = []
    data: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "CONSOLE_SCRIPTS":
            scripts = ast.literal_eval(node.value)
        if isinstance(node, ast.keyword) and node.arg == "package_data":
            data = ast.literal_eval(node.value)["siam_tracking_ros"]
    return scripts, data


def test_every_executable_is_a_console_script_that_resolves() -> None:
    scripts, _ = _setup_values()
    entries = dict(line.replace(" ", "").split("=") for line in scripts)
    assert set(entries) == {p.name for p in (ROOT / "scripts").iterdir()}
    for target in entries.values():
        module, _, function = target.partition(":")
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin is not None, module
        tree = ast.parse(Path(spec.origin).read_text())
        assert function in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, target


def test_package_data_globs_match_files() -> None:
    _, data = _setup_values()
    for pattern in data:
        assert list((ROOT / "siam_tracking_ros").glob(pattern)), pattern
