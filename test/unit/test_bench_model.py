"""siam-bench model: real trackers on real frames; checks the report's structure, not its speed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from siam_tracking_ros.bench import cli, memory
from siam_tracking_ros.bench.model import bench_model, load_frames
from siam_tracking_ros.bench.node import memory_drift
from siam_tracking_ros.data.sequences import load_otb_sequence
from siam_tracking_ros.eval import factory


@pytest.fixture(scope="module")
def crossing_dir(sequences_dir: Path) -> Path:
    return sequences_dir / "otb_Crossing"


def test_bench_model_report(crossing_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench"
    # two configurations: each runs in its own child process
    code = cli.main(["model", "--tracker", "opencv-kcf", "--targets", "1", "2",
                     "--frames", "6", "--warmup", "1", "--resolution", "640x480",
                     "--sequence", str(crossing_dir), "--out", str(out)])
    assert code == 0
    doc = json.loads((out / "bench.json").read_text())
    rows = doc["results"]
    assert [(r["tracker"], r["targets"]) for r in rows] == [("opencv-kcf", 1), ("opencv-kcf", 2)]
    for row in rows:
        assert row["resolution"] == "640x480" and row["frames"] == 6 and row["batched"] is False
        assert 0 < row["track_p50_ms"] <= row["track_p95_ms"] <= row["track_p99_ms"]
        assert row["target_fps"] == pytest.approx(row["fps"] * row["targets"])
        assert row["peak_rss_mib"] is None or row["peak_rss_mib"] >= 1.0
        assert row["cuda_peak_mib"] is None
    assert doc["command"].startswith("siam-bench model") and "cpu" in doc["machine"]
    assert "| opencv-kcf | cpu | False | False | 2 | 640x480 |" in (out / "bench.md").read_text()
    assert "| tracker | device |" in capsys.readouterr().out


def test_bench_registry_variant_falls_back_to_random_weights(crossing_dir: Path) -> None:
    variants = factory._variant_names()
    if not variants:
        pytest.skip("no tracker variant registered yet")
    frames, box = load_frames(load_otb_sequence(crossing_dir), 3, None)
    request = factory.TrackerRequest(variants[0], "random")
    result = bench_model(request, frames, box, "cpu", targets=1, warmup=0, init_repeats=1)
    assert result.device == "cpu" and result.frames == 2 and result.weights == "random"
    assert result.init_ms > 0 and result.track_p99_ms >= result.track_p50_ms > 0


def test_load_frames_scales_box(crossing_dir: Path) -> None:
    seq = load_otb_sequence(crossing_dir)
    frames, box = load_frames(seq, 2, (720, 480))
    assert frames[0].shape == (480, 720, 3)
    np.testing.assert_allclose(box, seq.boxes[0] * np.array([2, 2, 2, 2]))


def test_memory_readings_and_drift() -> None:
    rss = memory.rss_mib()
    assert rss is None or rss > 1.0
    if memory.reset_peak_rss():
        # in a long test process other threads may free memory between the readings: measure from
        # right after the reset and allow a second try before calling the reading broken
        for _ in range(3):
            memory.reset_peak_rss()
            base = memory.rss_mib()
            block = np.ones(64 * 2**20 // 8)  # 64 MiB touched
            peak = memory.peak_rss_mib()
            del block
            if peak >= base + 32:
                break
        assert peak >= base + 32, (base, peak)
    flat = [{"rss_mib": 100.0 + (i % 2)} for i in range(16)]
    growing = [{"rss_mib": 100.0 + 10 * i} for i in range(16)]
    assert abs(memory_drift(flat)) <= 1.0
    assert memory_drift(growing) == pytest.approx(235.0 - 155.0)  # last vs second quarter medians
    assert memory_drift(flat[:4]) is None


def test_bench_in_process_reports_errors_per_configuration(crossing_dir: Path, tmp_path: Path) -> None:
    code = cli.main(["model", "--in-process", "--tracker", "opencv-mil", "opencv-nano", "--frames", "3",
                     "--nano-backbone", str(tmp_path / "missing.onnx"), "--sequence", str(crossing_dir),
                     "--out", str(tmp_path)])
    assert code == 0
    mil, nano = json.loads((tmp_path / "bench.json").read_text())["results"]
    assert mil["frames"] == 3 and "error" not in mil
    assert "FileNotFoundError" in nano["error"] and "nano-backbone" in nano["error"]


def test_bench_bad_tracker_name(crossing_dir: Path, tmp_path: Path) -> None:
    assert cli.main(["model", "--tracker", "nope", "--sequence", str(crossing_dir),
                     "--out", str(tmp_path)]) == 2
