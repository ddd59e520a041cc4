"""NanoTrack networks: official checkpoints load, outputs match the official ONNX exports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from siam_tracking_ros.models.backbones.mobilenetv3 import make_divisible
from siam_tracking_ros.trackers.nanotrack import (
    NanoTrackNet,
    detect_version,
    import_official_nanotrack,
)
from siam_tracking_ros.weights.io import load_checkpoint_safely, load_state_into

VERSIONS = ["v1", "v2", "v3"]
#: ONNX exports that ship with the official weights (v1/v2 simplified, v3 plain)
ONNX_SUFFIX = {"v1": "_sim", "v2": "_sim", "v3": ""}


def official_state(nanotrack_dir: Path, version: str) -> dict[str, torch.Tensor]:
    return load_checkpoint_safely(nanotrack_dir / "pretrained" / f"nanotrack{version}.pth")


def loaded_network(nanotrack_dir: Path, version: str) -> NanoTrackNet:
    network = NanoTrackNet(version)
    load_state_into(network, import_official_nanotrack(official_state(nanotrack_dir, version)), "nanotrack")
    return network.eval()


@pytest.mark.parametrize(("version", "channels", "score_size"), [("v1", 48, 16), ("v2", 48, 16),
                                                                 ("v3", 96, 15)])
def test_nanotrack_network_shapes(version: str, channels: int, score_size: int) -> None:
    network = NanoTrackNet(version).eval()
    assert network.head_kind == "ban"
    with torch.no_grad():
        assert network.backbone(torch.zeros(1, 3, 127, 127)).shape == (1, channels, 8, 8)
        out = network(torch.rand(2, 3, 127, 127) * 255, torch.rand(2, 3, 255, 255) * 255)
    assert out["cls"].shape == (2, 2, score_size, score_size)
    assert out["loc"].shape == (2, 4, score_size, score_size)
    assert (out["loc"] > 0).all()  # exp(): distances to the box edges are positive


def test_nanotrack_make_divisible_matches_official_squeeze_widths() -> None:
    assert [make_divisible(c // 4) for c in (16, 96, 240, 120, 144, 288)] == [8, 24, 64, 32, 40, 72]


@pytest.mark.shared_data
@pytest.mark.parametrize("version", VERSIONS)
def test_nanotrack_official_checkpoint_fits_exactly(version: str, nanotrack_dir: Path) -> None:
    raw = official_state(nanotrack_dir, version)
    assert detect_version(raw) == version
    state = import_official_nanotrack(raw)
    own = NanoTrackNet(version).state_dict()
    assert set(state) == set(own)
    assert all(state[k].shape == own[k].shape for k in own)
    # only the unused neck is dropped
    assert sorted({k.split(".")[0] for k in set(raw) - set(state)}) == ["neck"]


@pytest.mark.shared_data
@pytest.mark.parametrize("version", VERSIONS)
def test_nanotrack_matches_official_onnx_export(version: str, nanotrack_dir: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    folder = nanotrack_dir / f"nanotrack{version}"
    backbone = ort.InferenceSession(str(folder / f"nanotrack_backbone{ONNX_SUFFIX[version]}.onnx"))
    head = ort.InferenceSession(str(folder / f"nanotrack_head{ONNX_SUFFIX[version]}.onnx"))
    network = loaded_network(nanotrack_dir, version)
    search = torch.from_numpy(np.random.default_rng(0).uniform(0, 255, (1, 3, 255, 255)).astype(np.float32))
    expected_xf = backbone.run(None, {backbone.get_inputs()[0].name: search.numpy()})[0]
    with torch.no_grad():
        xf = network.backbone(search)
        np.testing.assert_allclose(xf.numpy(), expected_xf, atol=1e-3, rtol=1e-3)
        zf = xf[:, :, 4:12, 4:12].contiguous()  # any 8x8 template feature map will do
        cls, loc = network.ban_head(zf, xf)
    feeds = {"input1": zf.numpy(), "input2": xf.numpy()}
    expected_cls, expected_loc = head.run(["output1", "output2"], feeds)
    np.testing.assert_allclose(cls.numpy(), expected_cls, atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(loc.numpy(), expected_loc, atol=1e-3, rtol=1e-3)


@pytest.mark.shared_data
def test_nanotrack_importer_refuses_wrong_version_and_foreign_keys(nanotrack_dir: Path) -> None:
    from siam_tracking_ros.trackers.nanotrack import NanoTrackConfig

    raw = official_state(nanotrack_dir, "v3")
    with pytest.raises(ValueError, match="NanoTrack v3 but version='v2'"):
        import_official_nanotrack(raw, NanoTrackConfig(version="v2"))
    with pytest.raises(KeyError, match="rpn_head"):
        import_official_nanotrack({**raw, "rpn_head.cls.weight": torch.zeros(1)})
    without_head = {k: v for k, v in raw.items() if not k.startswith("ban_head.")}
    with pytest.raises(ValueError, match="not a NanoTrack"):
        import_official_nanotrack(without_head)
