"""siam-bench model: real trackers on real frames; checks the report's structure, not its speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from siam_tracking_ros.bench import cli, memory
from siam_tracking_ros.bench.model import bench_model, load_frames
from siam_tracking_ros.bench.node import memory_drift
from siam_tracking_ros.data.sequences import load_otb_sequence
from siam_tracking_ros.eval import factory

ROOT = Path(__file__).resolve().parents[2]
HAVE_PROC = Path("/proc/self/status").is_file()


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
        if HAVE_PROC:  # Linux: both readings are numbers, the peak at least the final RSS
            assert row["rss_mib"] >= 1.0 and row["peak_rss_mib"] >= row["rss_mib"], row
        else:
            assert row["rss_mib"] is None and row["peak_rss_mib"] is None
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


#: run in a fresh interpreter: in the test process, DDS and engine threads allocate and free memory
#: between the readings (17 of 217 single readings failed that way)
MEMORY_PROBE = """
import json
import numpy as np
from siam_tracking_ros.bench import memory
if not memory.reset_peak_rss():
    print(json.dumps({"reset": False}))
    raise SystemExit(0)
base = memory.rss_mib()
block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
during = memory.rss_mib()
del block  # an allocation this large is an mmap: freeing it gives the pages back
print(json.dumps({"reset": True, "base": base, "during": during, "after": memory.rss_mib(),
                  "peak": memory.peak_rss_mib()}))
"""


def test_memory_readings_in_a_fresh_process() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", MEMORY_PROBE], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    reading = json.loads(proc.stdout.splitlines()[-1])
    if not reading["reset"]:
        pytest.skip("cannot reset the peak RSS here: /proc/self/clear_refs is not writable")
    base, during, after, peak = (reading[k] for k in ("base", "during", "after", "peak"))
    # the kernel's RSS counters may lag by a few pages: 8 MiB of slack on the 64 MiB block
    assert during >= base + 56, reading  # the block is resident
    assert peak >= base + 56, reading  # the high-water mark covers it ...
    assert after <= peak - 48, reading  # ... and stays there once the block is gone (not the current RSS)


class FakeProc:
    """Stands in for ``memory.Path``: serves one text for every /proc path and records the paths."""

    def __init__(self, text: str | None) -> None:
        self.text, self.paths, self.written = text, [], []

    def __call__(self, path: str) -> FakeProc:
        self.paths.append(path)
        return self

    def read_text(self) -> str:
        if self.text is None:
            raise OSError("no /proc here")
        return self.text

    def write_text(self, data: str) -> int:
        if self.text is None:
            raise PermissionError("clear_refs")
        self.written.append((self.paths[-1], data))
        return len(data)


STATUS = "Name:\tpython\nVmPeak:\t  999999 kB\nVmHWM:\t  307200 kB\nVmRSS:\t  102400 kB\nThreads:\t7\n"


def test_proc_status_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    proc = FakeProc(STATUS)
    monkeypatch.setattr(memory, "Path", proc)
    assert memory.rss_mib(1234) == pytest.approx(100.0)  # 102400 kB
    assert memory.peak_rss_mib() == pytest.approx(300.0)  # VmHWM, not VmPeak (virtual)
    assert proc.paths == ["/proc/1234/status", "/proc/self/status"]
    assert memory.reset_peak_rss() is True
    assert proc.written == [(f"/proc/{os.getpid()}/clear_refs", "5")]
    for broken in ("VmHWM:\t 10 kB\n", "VmRSS:\t lots kB\n", ""):
        monkeypatch.setattr(memory, "Path", FakeProc(broken))
        assert memory.rss_mib() is None, broken
    monkeypatch.setattr(memory, "Path", FakeProc(None))  # no /proc: readings are None, reset refused
    assert memory.rss_mib() is None and memory.peak_rss_mib() is None
    assert memory.reset_peak_rss() is False


def test_memory_drift() -> None:
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
