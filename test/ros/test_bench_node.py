"""siam-bench node against the real tracker node over DDS (nanotrack, official v2 weights).

Checks that frames flow and the report adds up; latencies are reported, never asserted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from siam_tracking_ros.bench import cli
from siam_tracking_ros.bench.node import source_node_available

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture
def node_args(nanotrack_weights: Path, crossing, tmp_path: Path) -> list[str]:
    if not source_node_available():
        pytest.skip("siam_tracking_ros/ros/tracker_node.py is not there yet")
    return ["--tracker", "nanotrack", "--weights", str(nanotrack_weights), "--option", "version=v2",
            "--sequence", str(crossing.frames[0].parent.parent), "--out", str(tmp_path / "out"),
            "--startup-timeout", "120"]


def test_node_latency_report(node_args: list[str], tmp_path: Path) -> None:
    code = cli.main(["node", *node_args, "--resolution", "320x240", "--rate", "10", "--duration", "2"])
    assert code == 0, (tmp_path / "out" / "node_nanotrack.log").read_text()[-2000:]
    (row,) = json.loads((tmp_path / "out" / "bench.json").read_text())["results"]
    assert row["resolution"] == "320x240" and row["rate_hz"] == 10.0
    assert row["published"] == 20
    assert 0 < row["received"] <= row["published"]
    assert row["dropped"] == row["published"] - row["received"]
    assert row["latency_p50_ms"] > 0 and row["latency_max_ms"] >= row["latency_p99_ms"]
    assert "| nanotrack | 320x240 |" in (tmp_path / "out" / "bench.md").read_text()
    # the load columns (issue 15): frames that reached the node, processed rate, service round
    # trips while streaming, node memory at the start and the end of the run
    assert row["node_received"] is not None, "no /diagnostics counter from the node"
    assert 0 < row["received"] <= row["node_received"] <= row["published"]
    assert row["processed_hz"] > 0 and row["latency_p95_ms"] >= row["latency_p50_ms"]
    assert row["service_p95_ms"] > 0
    assert row["rss_start_mib"] > 10 and row["rss_end_mib"] > 10


def test_node_soak_records_memory(node_args: list[str], tmp_path: Path) -> None:
    code = cli.main(["node", *node_args, "--resolution", "320x240", "--rate", "20",
                     "--soak", "60", "--sample-every", "0.25"])
    assert code == 0
    (row,) = json.loads((tmp_path / "out" / "bench.json").read_text())["results"]
    assert row["published"] == 60 and row["received"] > 0
    samples = row["memory"]
    assert len(samples) >= 8
    assert all(s["rss_mib"] > 10 for s in samples)
    assert [s["frame"] for s in samples] == sorted(s["frame"] for s in samples)
    assert "rss_drift_mib" in row and row["rss_drift_mib"] is not None
