"""siam-tune: grid parsing, and a real 2x1 grid on a shared sequence whose rows match siam-eval."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from siam_tracking_ros.eval.tune import combinations, main, parse_grid


def test_grid_parsing_and_combinations() -> None:
    grid = parse_grid(["window_influence=0.3,0.5", "penalty_k=0.1", "opencv_compat=false"])
    assert grid == {"window_influence": [0.3, 0.5], "penalty_k": [0.1], "opencv_compat": [False]}
    assert combinations(grid) == [{"window_influence": 0.3, "penalty_k": 0.1, "opencv_compat": False},
                                  {"window_influence": 0.5, "penalty_k": 0.1, "opencv_compat": False}]
    with pytest.raises(ValueError, match="key=v1"):
        parse_grid(["window_influence"])


def test_tune_on_a_real_sequence_agrees_with_siam_eval(sequences_dir: Path, tmp_path: Path) -> None:
    from siam_tracking_ros.eval.cli import main as eval_main

    common = ["--dataset", str(sequences_dir), "--sequences", "otb_Dudek_first20", "--max-frames", "12"]
    assert main(["--tracker", "nanotrack", *common, "--grid", "window_influence=0.0,0.9",
                 "--out", str(tmp_path / "tune"), "--no-progress"]) == 0
    rows = list(csv.DictReader((tmp_path / "tune" / "tune.csv").open()))
    assert sorted(float(r["window_influence"]) for r in rows) == [0.0, 0.9]
    assert float(rows[0]["auc_mean"]) >= float(rows[1]["auc_mean"])
    best = yaml.safe_load((tmp_path / "tune" / "best.yaml").read_text())
    assert best["tracker_params"] == {"window_influence": float(rows[0]["window_influence"])}
    # the same combination through siam-eval gives the same AUC
    assert eval_main(["--tracker", "nanotrack", *common, "--option",
                      f"window_influence={rows[0]['window_influence']}", "--out", str(tmp_path / "eval"),
                      "--no-plots", "--no-progress"]) == 0
    import json

    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    auc = results["trackers"]["nanotrack"]["sequences"]["otb_Dudek_first20"]["auc"]
    assert auc == pytest.approx(float(rows[0]["auc_otb_Dudek_first20"]), abs=1e-4)


def test_bad_grid_is_a_clear_error(sequences_dir: Path, tmp_path: Path, capsys) -> None:
    code = main(["--tracker", "nanotrack", "--dataset", str(sequences_dir),
                 "--sequences", "otb_Dudek_first20", "--grid", "no_such_field=1",
                 "--out", str(tmp_path), "--no-progress"])
    assert code == 2 and "no_such_field" in capsys.readouterr().err


def test_presence_tuning_sets_the_state_machine_and_agrees_with_siam_eval(sequences_dir: Path,
                                                                         tmp_path: Path) -> None:
    """Policy keys reach the state machine (threshold 0: every frame seen, never LOST; above 1:
    no frame seen, LOST after one frame), and a row equals siam-eval's presence protocol."""
    import json

    from siam_tracking_ros.eval.cli import main as eval_main

    common = ["--dataset", str(sequences_dir), "--sequences", "otb_Dudek_first20", "otb_Crossing",
              "--max-frames", "20", "--splice-frames", "10"]
    assert main(["--mode", "presence", "--tracker", "nanotrack", *common, "--grid",
                 "score_threshold=0.0,1.01", "lost_frames=1", "--out", str(tmp_path / "tune"),
                 "--no-progress"]) == 0
    rows = {float(r["score_threshold"]): r for r in csv.DictReader((tmp_path / "tune" / "tune.csv").open())}
    assert set(rows) == {0.0, 1.01}
    assert float(rows[0.0]["presence_absent_lost"]) == 0.0
    assert float(rows[0.0]["presence_present_tracking"]) == 1.0
    assert float(rows[1.01]["presence_absent_lost"]) == 1.0
    assert float(rows[1.01]["presence_present_tracking"]) < 0.1
    for row in rows.values():
        mean = (float(row["presence_absent_lost"]) + float(row["presence_present_tracking"])) / 2
        assert float(row["presence_mean"]) == pytest.approx(mean, abs=1e-4)
    best = yaml.safe_load((tmp_path / "tune" / "best.yaml").read_text())
    assert set(best["tracker_params"]) == {"score_threshold", "lost_frames"} and "presence_mean" in best
    assert eval_main(["--tracker", "nanotrack", *common, "--mode", "presence", "--lost-frames", "1",
                      "--score-threshold", "1.01",
                      "--out", str(tmp_path / "eval"), "--no-plots", "--no-progress"]) == 0
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    presence = results["trackers"]["nanotrack"]["presence"]
    for key in ("absent_lost", "present_tracking", "roc_auc"):
        assert presence[key] == pytest.approx(float(rows[1.01][f"presence_{key}"]), abs=1e-4)
