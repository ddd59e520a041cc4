"""Registry, config overrides, the project weight format and safe checkpoint loading."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from siam_tracking_ros.core.device import DeviceError, resolve_device
from siam_tracking_ros.core.result import TrackResult
from siam_tracking_ros.trackers import (
    InvalidBoxError,
    SiameseTracker,
    build_tracker,
    get_spec,
    list_trackers,
    make_config,
    register_tracker,
    registry,
)
from siam_tracking_ros.weights.io import WeightsError, load_checkpoint_safely, save_weights


@dataclass
class ProbeConfig:
    channels: int = 4
    window_influence: float = 0.3


class ProbeNet(nn.Module):
    head_kind = "fc"

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3)

    def template(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv(z)

    def search(self, feats: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"score": (self.conv(x).mean() * feats.mean()).reshape(1)}

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.search(self.template(z), x)


class ProbeTracker(SiameseTracker):
    def _init(self, frame: np.ndarray, box: tuple[float, ...]) -> None:
        self.box = box

    def _track(self, frame: np.ndarray) -> TrackResult:
        return TrackResult(box=tuple(self.box), score=1.0)


def _import_probe(state, _config):
    return {k.replace("features.", "conv."): v for k, v in state.items()}


def _build_probe(config: ProbeConfig, device: torch.device) -> SiameseTracker:
    return ProbeTracker(ProbeNet(config.channels), config, device)


@pytest.fixture(autouse=True, scope="module")
def probe_variant():
    """Register the test-only variant for this module and remove it afterwards."""
    register_tracker("probe-test", ProbeConfig, description="test-only variant",
                     importer=_import_probe)(_build_probe)
    yield
    registry._REGISTRY.pop("probe-test", None)


def test_registry_lists_and_describes() -> None:
    assert "probe-test" in list_trackers()
    assert get_spec("probe-test").description == "test-only variant"
    with pytest.raises(KeyError, match="unknown tracker 'nope'"):
        get_spec("nope")


def test_config_overrides_and_unknown_keys() -> None:
    config = make_config("probe-test", {"channels": 6}, window_influence=0.5)
    assert (config.channels, config.window_influence) == (6, 0.5)
    with pytest.raises(ValueError, match="unknown option"):
        make_config("probe-test", penalty=1.0)


def test_weights_round_trip(tmp_path: Path) -> None:
    tracker = build_tracker("probe-test", weights="random", device="cpu", channels=5)
    path = save_weights(tmp_path / "probe.safetensors", tracker.model.state_dict(), "probe-test",
                        tracker.config)
    again = build_tracker("probe-test", weights=path, device="cpu")
    assert again.config.channels == 5  # architecture option restored from the file
    for key, value in tracker.model.state_dict().items():
        torch.testing.assert_close(again.model.state_dict()[key], value)


def test_half_storage_is_cast_back(tmp_path: Path) -> None:
    tracker = build_tracker("probe-test", weights="random", device="cpu")
    path = save_weights(tmp_path / "probe16.safetensors", tracker.model.state_dict(), "probe-test",
                        tracker.config, half=True)
    again = build_tracker("probe-test", weights=path, device="cpu")
    assert again.model.conv.weight.dtype == torch.float32
    torch.testing.assert_close(again.model.conv.weight, tracker.model.conv.weight, atol=1e-3, rtol=1e-3)


def test_wrong_variant_names_both(tmp_path: Path) -> None:
    tracker = build_tracker("probe-test", weights="random", device="cpu")
    path = save_weights(tmp_path / "other.safetensors", tracker.model.state_dict(), "other-variant",
                        tracker.config)
    with pytest.raises(WeightsError, match="'other-variant', not for 'probe-test'"):
        build_tracker("probe-test", weights=path, device="cpu")


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        build_tracker("probe-test", weights=tmp_path / "none.safetensors", device="cpu")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(WeightsError, match="cannot read"):
        build_tracker("probe-test", weights=corrupt, device="cpu")
    with pytest.raises(WeightsError, match="no trained default weights"):
        build_tracker("probe-test", device="cpu")


def test_shape_mismatch_is_reported(tmp_path: Path) -> None:
    small = build_tracker("probe-test", weights="random", device="cpu", channels=2)
    path = save_weights(tmp_path / "small.safetensors", small.model.state_dict(), "probe-test",
                        {"channels": 3})
    with pytest.raises(WeightsError, match="wrong shape"):
        build_tracker("probe-test", weights=path, device="cpu")


def test_official_checkpoint_via_importer(tmp_path: Path) -> None:
    tracker = build_tracker("probe-test", weights="random", device="cpu")
    official = {f"module.{k.replace('conv.', 'features.')}": v for k, v in tracker.model.state_dict().items()}
    path = tmp_path / "official.pth"
    torch.save({"epoch": 3, "state_dict": official}, path)
    again = build_tracker("probe-test", weights=path, device="cpu")
    torch.testing.assert_close(again.model.conv.bias, tracker.model.conv.bias)


class Arbitrary:
    """A class that a weights_only load must refuse to unpickle."""


def test_unsafe_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "obj": Arbitrary()}, path)
    with pytest.raises(WeightsError, match="weights_only=True"):
        load_checkpoint_safely(path)


def test_init_validation_and_track_before_init() -> None:
    tracker = build_tracker("probe-test", weights="random", device="cpu")
    frame = np.zeros((40, 50, 3), np.uint8)
    with pytest.raises(RuntimeError, match="before init"):
        tracker.track(frame)
    for bad in [(1, 2, 0, 5), (1, 2, -3, 5), (float("nan"), 1, 2, 2), (60, 1, 5, 5), (1, 2, 3)]:
        with pytest.raises(InvalidBoxError):
            tracker.init(frame, bad)
    tracker.init(frame, (48, 38, 10, 10))  # partly outside is allowed
    assert tracker.track(frame).box == (48.0, 38.0, 10.0, 10.0)


def test_resolve_device() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device("cuda:0")
