"""Official key layouts of SiamRPN++ / SiamMask checkpoints: write, load through the registry, compare.

Each test builds our network with random weights (and random BN statistics), writes its state in
an official layout (the inverse mapping lives here, written from the published module names),
loads the file with ``build_tracker(name, weights=path, ...)`` and checks identical outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from siam_tracking_ros.trackers import build_tracker
from siam_tracking_ros.trackers.siammask import SiamMaskNet
from siam_tracking_ros.trackers.siamrpnpp import SiamRPNppNet, detect_backbone
from siam_tracking_ros.weights.io import WeightsError

#: pysot AlexNetLegacy ``features`` indices of (conv, bn) for stages 1..5
PYSOT_ALEXNET_FEATURES = ((0, 1), (4, 5), (8, 9), (11, 12), (14, 15))


def _randomized(net: nn.Module, seed: int) -> nn.Module:
    """``net`` in eval mode with random BN statistics and affine parameters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.05)
                module.running_var.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
                module.weight.copy_(torch.rand(n, generator=generator) * 0.5 + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.05)
                module.num_batches_tracked.fill_(7)
        for name, param in net.named_parameters():
            if name.endswith(("cls_weight", "loc_weight")):
                param.copy_(torch.randn(param.shape, generator=generator))
    return net.eval()


def _inputs(search: int = 159) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(11)
    z = torch.rand(1, 3, 127, 127, generator=generator) * 255
    x = torch.rand(1, 3, search, search, generator=generator) * 255
    return z, x


def _save(tmp_path: Path, name: str, state: dict[str, torch.Tensor], wrap: str | None = None) -> Path:
    path = tmp_path / name
    torch.save({wrap: state, "epoch": 19} if wrap else state, path)
    return path


def _pysot_alexnet_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "backbone":
            stage, sub = int(parts[1][4:]), int(parts[2])
            key = ".".join(["backbone", "features", str(PYSOT_ALEXNET_FEATURES[stage - 1][sub]), *parts[3:]])
        out[key] = value
    return out


def _siammask_original_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our (= pysot) names -> SiamMask ``Custom`` names; no BN counters, like PyTorch 0.4.0 files."""
    prefixes = {"backbone.": "features.features.", "neck.downsample.": "features.downsample.",
                "rpn_head.": "rpn_model.", "mask_head.": "mask_model.mask.",
                "refine_head.": "refine_model."}
    out = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        prefix = next(p for p in prefixes if key.startswith(p))
        out[prefixes[prefix] + key[len(prefix):]] = value
    return out


def _identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --- SiamRPN++ ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("backbone", "layout", "search"), [
    pytest.param("resnet50", None, 159, marks=pytest.mark.slow),
    ("mobilenetv2", None, 159),
    ("alexnet", _pysot_alexnet_layout, 287),
])
def test_pysot_siamrpnpp_checkpoint_round_trip(tmp_path: Path, backbone: str,
                                               layout: Callable | None, search: int) -> None:
    torch.manual_seed(1)
    ours = _randomized(SiamRPNppNet(backbone, weighted=backbone == "resnet50"), seed=2)
    state = ours.state_dict()
    official = layout(state) if layout else state
    assert detect_backbone(official) == backbone
    path = _save(tmp_path, "model.pth", official)
    tracker = build_tracker("siamrpnpp", weights=path, device="cpu")  # backbone read off the keys
    assert tracker.config.backbone == backbone
    z, x = _inputs(search)
    with torch.no_grad():
        _identical(ours(z, x), tracker.model(z, x))


def test_siamrpnpp_checkpoint_for_another_backbone_is_refused(tmp_path: Path) -> None:
    torch.manual_seed(1)
    path = _save(tmp_path, "model.pth", SiamRPNppNet("alexnet").state_dict())
    with pytest.raises(WeightsError, match="siamrpnpp"):
        build_tracker("siamrpnpp", weights=path, device="cpu", backbone="mobilenetv2")


# --- SiamMask ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def siammask_net() -> SiamMaskNet:
    torch.manual_seed(3)
    return _randomized(SiamMaskNet(), seed=4)


@pytest.fixture(scope="module")
def siammask_reference(siammask_net: SiamMaskNet) -> dict[str, torch.Tensor]:
    z, x = _inputs()
    with torch.no_grad():
        outputs = siammask_net(z, x)
        outputs["refined"] = siammask_net.refine(outputs, (4, 9))
    return outputs


@pytest.mark.parametrize(("layout", "wrap"), [
    (None, None),  # pysot siammask_r50_l3 model.pth
    (_siammask_original_layout, "state_dict"),  # SiamMask_DAVIS.pth / SiamMask_VOT.pth
])
def test_siammask_checkpoint_round_trip(tmp_path: Path, siammask_net: SiamMaskNet,
                                        siammask_reference: dict[str, torch.Tensor],
                                        layout: Callable | None, wrap: str | None) -> None:
    state = siammask_net.state_dict()
    path = _save(tmp_path, "SiamMask.pth", layout(state) if layout else state, wrap)
    tracker = build_tracker("siammask", weights=path, device="cpu")
    z, x = _inputs()
    with torch.no_grad():
        outputs = tracker.model(z, x)
        outputs["refined"] = tracker.model.refine(outputs, (4, 9))
    _identical(siammask_reference, outputs)
    assert tuple(outputs["refined"].shape) == (1, 1, 127, 127)


# --- wrong files -------------------------------------------------------------------------------

def test_siammask_checkpoint_is_refused_by_siamrpnpp(tmp_path: Path, siammask_net: SiamMaskNet) -> None:
    for state in (siammask_net.state_dict(), _siammask_original_layout(siammask_net.state_dict())):
        path = _save(tmp_path, "mask.pth", state)
        with pytest.raises(WeightsError) as info:
            build_tracker("siamrpnpp", weights=path, device="cpu")
        assert "siamrpnpp" in str(info.value) and "SiamMask" in str(info.value)


def test_siamrpnpp_checkpoint_is_refused_by_siammask(tmp_path: Path) -> None:
    torch.manual_seed(5)
    path = _save(tmp_path, "rpn.pth", SiamRPNppNet("mobilenetv2").state_dict())
    with pytest.raises(WeightsError) as info:
        build_tracker("siammask", weights=path, device="cpu")
    assert "siammask" in str(info.value) and "SiamRPN++" in str(info.value)


def test_unknown_keys_are_named(tmp_path: Path) -> None:
    torch.manual_seed(6)
    state = SiamRPNppNet("alexnet").state_dict()
    state["classifier.weight"] = torch.zeros(3)
    with pytest.raises(WeightsError, match=r"classifier\.weight"):
        build_tracker("siamrpnpp", weights=_save(tmp_path, "x.pth", state), device="cpu",
                      backbone="alexnet")
    with pytest.raises(WeightsError, match="neither pysot"):
        build_tracker("siammask", weights=_save(tmp_path, "y.pth", {"conv.weight": torch.zeros(1)}),
                      device="cpu")
