"""config/<variant>.yaml exists for every registered variant and is what the generator writes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from siam_tracking_ros.trackers import list_trackers

ROOT = Path(__file__).resolve().parents[2]


def _generator():
    pytest.importorskip("rcl_interfaces", reason="needs the ROS environment (source env.sh)")
    path = ROOT / "tools" / "make_node_configs.py"
    spec = importlib.util.spec_from_file_location("make_node_configs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", list_trackers())
def test_config_file_is_current(name: str) -> None:
    path = ROOT / "config" / f"{name}.yaml"
    assert path.exists(), f"missing {path}: run python tools/make_node_configs.py"
    assert path.read_text() == _generator().render(name), "stale: run python tools/make_node_configs.py"
    params = yaml.safe_load(path.read_text())["/**"]["ros__parameters"]
    assert params["tracker"] == name
