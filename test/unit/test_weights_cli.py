"""siam-convert: official NanoTrack checkpoints -> project .safetensors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from siam_tracking_ros.trackers.registry import build_tracker
from siam_tracking_ros.weights.cli import main, parse_options
from siam_tracking_ros.weights.io import load_project_file


def official(nanotrack_dir: Path, version: str) -> Path:
    return nanotrack_dir / "pretrained" / f"nanotrack{version}.pth"


def outputs(tracker, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    z = torch.rand(1, 3, 127, 127, generator=generator) * 255
    x = torch.rand(1, 3, 255, 255, generator=generator) * 255
    with torch.no_grad():
        return tracker.model(z, x)


def test_weights_cli_parse_options() -> None:
    assert parse_options(["version=v3", "lr=0.3", "opencv_compat=true", "penalty_k=null"]) == {
        "version": "v3", "lr": 0.3, "opencv_compat": True, "penalty_k": None}
    with pytest.raises(ValueError, match="key=value"):
        parse_options(["version"])


@pytest.mark.shared_data
def test_weights_cli_converts_official_v2(nanotrack_dir: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "nanotrack_v2.safetensors"
    assert main(["--tracker", "nanotrack", str(official(nanotrack_dir, "v2")), str(out),
                 "--option", "lr=0.4"]) == 0
    assert "wrote" in capsys.readouterr().out
    tensors, metadata = load_project_file(out)
    assert metadata["variant"] == "nanotrack"
    config = json.loads(metadata["config"])
    assert config["version"] == "v2" and config["lr"] == 0.4
    assert not any(k.startswith("neck.") for k in tensors)
    converted = build_tracker("nanotrack", weights=out, device="cpu")
    assert converted.config.lr == 0.4
    direct = build_tracker("nanotrack", weights=official(nanotrack_dir, "v2"), device="cpu")
    for key, value in outputs(direct).items():
        torch.testing.assert_close(outputs(converted)[key], value, rtol=0, atol=0)


@pytest.mark.shared_data
def test_weights_cli_half_v3(nanotrack_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "nanotrack_v3_fp16.safetensors"
    assert main(["--tracker", "nanotrack", str(official(nanotrack_dir, "v3")), str(out), "--half"]) == 0
    tensors, metadata = load_project_file(out)
    assert json.loads(metadata["config"])["version"] == "v3"  # read off the checkpoint
    assert {t.dtype for t in tensors.values() if t.is_floating_point()} == {torch.float16}
    half = build_tracker("nanotrack", weights=out, device="cpu")
    assert half.config.version == "v3"
    full = build_tracker("nanotrack", weights=official(nanotrack_dir, "v3"), device="cpu", version="v3")
    np.testing.assert_allclose(outputs(half)["cls"].numpy(), outputs(full)["cls"].numpy(), atol=0.1)


@pytest.mark.shared_data
def test_weights_cli_errors(nanotrack_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.safetensors"
    assert main(["--tracker", "nanotrack", str(official(nanotrack_dir, "v3")), str(out),
                 "--option", "version=v2"]) == 2
    assert "NanoTrack v3 but version='v2'" in capsys.readouterr().err
    assert main(["--tracker", "siamfc", str(official(nanotrack_dir, "v2")), str(out)]) == 2
    assert "'siamfc'" in capsys.readouterr().err  # refused by (or missing) siamfc's importer
    assert main(["--tracker", "no_such", str(official(nanotrack_dir, "v2")), str(out)]) == 2
    assert "unknown tracker 'no_such'" in capsys.readouterr().err
    assert main(["--tracker", "nanotrack", str(official(nanotrack_dir, "v2")), str(out),
                 "--option", "colour=red"]) == 2
    assert "unknown option" in capsys.readouterr().err
    assert main(["--tracker", "nanotrack", str(tmp_path / "missing.pth"), str(out)]) == 2
    assert "not found" in capsys.readouterr().err
    assert not out.exists()
