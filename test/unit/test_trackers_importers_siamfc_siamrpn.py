"""Official-checkpoint importers: key-layout round trips through build_tracker, and refusals.

Each test writes a checkpoint in the official key layout (siamfc-pytorch, pysot
``siamrpn_alex_dwxcorr``, DaSiamRPN ``SiamRPN*.model``) from a randomly initialised network of ours
with the inverse mapping below, loads it through ``build_tracker`` and checks identical outputs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from siam_tracking_ros.trackers import build_tracker
from siam_tracking_ros.trackers.dasiamrpn import DaSiamRPNConfig, import_official_dasiamrpn
from siam_tracking_ros.trackers.siamfc import SiamFCConfig, SiamFCNet
from siam_tracking_ros.trackers.siamrpn import SiamRPNConfig, SiamRPNNet
from siam_tracking_ros.weights.io import WeightsError

# index of each stage's conv / bn in pysot's ``features`` and DaSiamRPN's ``featureExtract``
SEQUENTIAL = {1: (0, 1), 2: (4, 5), 3: (8, 9), 4: (11, 12), 5: (14, 15)}
DASIAMRPN_NAMES = {"template_cls_conv": "conv_cls1", "template_loc_conv": "conv_r1",
                   "search_cls_conv": "conv_cls2", "search_loc_conv": "conv_r2",
                   "loc_adjust": "regress_adjust"}


def randomise(module: nn.Module, seed: int) -> None:
    """Random weights everywhere, including batch-norm statistics and the head's adjust."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            values = torch.rand(tensor.shape, generator=g)
            if name.endswith("running_var") or name.endswith(".1.weight"):
                tensor.copy_(values + 0.5)
            else:
                tensor.copy_((values - 0.5) * 0.2)


def backbone_to_sequential(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Our ``backbone.conv{n}.{0|1}.*`` -> ``{prefix}.{index}.*``."""
    out = {}
    for key, value in state.items():
        if key.startswith("backbone.conv"):
            stage, part, rest = key.removeprefix("backbone.conv").split(".", 2)
            out[f"{prefix}.{SEQUENTIAL[int(stage)][int(part)]}.{rest}"] = value
    return out


def to_siamfc_pytorch(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """siamfc-pytorch's ``Net`` state dict: same backbone keys, no head parameters."""
    return {k: v for k, v in state.items() if k.startswith("backbone.")}


def to_pysot(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = backbone_to_sequential(state, "backbone.features")
    out.update({k: v for k, v in state.items() if k.startswith("rpn_head.")})
    return out


def to_dasiamrpn(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DaSiamRPN ``SiamRPN`` layout, saved before BN counters existed (no num_batches_tracked)."""
    out = backbone_to_sequential(state, "featureExtract")
    for key, value in state.items():
        if key.startswith("rpn_head."):
            module, rest = key.removeprefix("rpn_head.").split(".", 1)
            out[f"{DASIAMRPN_NAMES[module]}.{rest}"] = value
    return {k: v for k, v in out.items() if not k.endswith("num_batches_tracked")}


def save(tmp_path: Path, state: dict[str, torch.Tensor], wrap: str | None = None) -> Path:
    path = tmp_path / "official.pth"
    torch.save({wrap: state} if wrap else state, path)
    return path


def assert_same_outputs(ours: nn.Module, loaded: nn.Module, instance: int) -> None:
    g = torch.Generator().manual_seed(9)
    z = torch.rand(1, 3, 127, 127, generator=g) * 255
    x = torch.rand(1, 3, instance, instance, generator=g) * 255
    with torch.no_grad():
        expected, got = ours.eval()(z, x), loaded.eval()(z, x)
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)


def test_siamfc_pytorch_round_trip(tmp_path: Path) -> None:
    config = SiamFCConfig()
    ours = SiamFCNet(config)
    randomise(ours.backbone, 0)
    official = to_siamfc_pytorch(ours.state_dict())
    assert "backbone.conv1.0.weight" in official and "backbone.conv5.1.weight" not in official
    assert official["backbone.conv2.0.weight"].shape == (256, 48, 5, 5)  # groups=2
    tracker = build_tracker("siamfc", weights=save(tmp_path, official), device="cpu")
    torch.testing.assert_close(tracker.model.head.adjust.weight, torch.full((1, 1, 1, 1), 0.001))
    assert_same_outputs(ours, tracker.model, 255)


def test_pysot_alex_dwxcorr_round_trip(tmp_path: Path) -> None:
    layout = {"head": "depthwise", "width_mult": 1.0, "hidden": 256, "instance_size": 287}
    ours = SiamRPNNet(SiamRPNConfig(**layout))
    randomise(ours, 1)
    official = to_pysot(ours.state_dict())
    # facts of pysot's AlexNetLegacy + DepthwiseRPN(5, 256, 256)
    assert official["backbone.features.14.weight"].shape == (256, 384, 3, 3)
    assert official["rpn_head.cls.conv_kernel.0.weight"].shape == (256, 256, 3, 3)
    assert official["rpn_head.loc.head.3.weight"].shape == (20, 256, 1, 1)
    path = save(tmp_path, official, wrap="state_dict")
    tracker = build_tracker("siamrpn", weights=path, device="cpu", **layout)
    assert_same_outputs(ours, tracker.model, 287)
    with pytest.raises(WeightsError, match="siamrpn"):  # wrong head option: keys do not fit
        build_tracker("siamrpn", weights=path, device="cpu", head="upchannel")


def test_pysot_upchannel_round_trip(tmp_path: Path) -> None:
    layout = {"head": "upchannel", "width_mult": 0.25, "hidden": 16}
    ours = SiamRPNNet(SiamRPNConfig(**layout))
    randomise(ours, 2)
    tracker = build_tracker("siamrpn", weights=save(tmp_path, to_pysot(ours.state_dict())),
                            device="cpu", **layout)
    assert_same_outputs(ours, tracker.model, 255)


def test_dasiamrpn_round_trip(tmp_path: Path) -> None:
    layout = {"width_mult": 0.5, "hidden": 32}
    ours = SiamRPNNet(DaSiamRPNConfig(**layout))
    randomise(ours, 3)
    official = to_dasiamrpn(ours.state_dict())
    assert "featureExtract.15.running_var" in official and "conv_r1.weight" in official
    tracker = build_tracker("dasiamrpn", weights=save(tmp_path, official), device="cpu")
    assert (tracker.config.width_mult, tracker.config.hidden) == (0.5, 32)  # read off the shapes
    assert_same_outputs(ours, tracker.model, 271)


# Shapes of the official DaSiamRPN files (net.py: SiamRPN(size, feature_out, anchor=5)).
OFFICIAL_DASIAMRPN_SHAPES = {
    "SiamRPNBIG": {"featureExtract.0.weight": (192, 3, 11, 11), "featureExtract.4.weight": (512, 192, 5, 5),
                   "featureExtract.8.weight": (768, 512, 3, 3), "featureExtract.11.weight": (768, 768, 3, 3),
                   "featureExtract.14.weight": (512, 768, 3, 3), "featureExtract.15.running_mean": (512,),
                   "conv_r1.weight": (512 * 20, 512, 3, 3), "conv_r2.weight": (512, 512, 3, 3),
                   "conv_cls1.weight": (512 * 10, 512, 3, 3), "conv_cls2.weight": (512, 512, 3, 3),
                   "regress_adjust.weight": (20, 20, 1, 1)},
    "SiamRPNVOT": {"featureExtract.0.weight": (96, 3, 11, 11), "featureExtract.14.weight": (256, 384, 3, 3),
                   "conv_r1.weight": (256 * 20, 256, 3, 3), "conv_cls1.weight": (256 * 10, 256, 3, 3),
                   "conv_r2.bias": (256,), "regress_adjust.bias": (20,)},
}


@pytest.mark.parametrize("preset", ["SiamRPNBIG", "SiamRPNVOT"])
def test_dasiamrpn_official_shapes_fit(preset: str) -> None:
    """Official key names and shapes map onto the network the preset builds (no weights needed)."""
    presets = DaSiamRPNConfig.PRESETS[preset.removeprefix("SiamRPN").lower()]
    arch = {k: presets[k] for k in ("width_mult", "hidden")}
    with torch.device("meta"):
        ours = SiamRPNNet(DaSiamRPNConfig(**arch))  # type: ignore[arg-type]
    own = ours.state_dict()
    official = to_dasiamrpn(own)  # our network written in the official layout
    for key, shape in OFFICIAL_DASIAMRPN_SHAPES[preset].items():
        assert tuple(official[key].shape) == shape, key
    mapped = import_official_dasiamrpn(official, None)
    assert set(mapped) == set(own)
    assert all(mapped[k].shape == own[k].shape for k in own)


@pytest.fixture
def official_files(tmp_path: Path) -> dict[str, Path]:
    small = {"width_mult": 0.25, "hidden": 8}
    files = {}
    fc = SiamFCNet(SiamFCConfig())
    files["siamfc"] = tmp_path / "a.pth"
    torch.save(to_siamfc_pytorch(fc.state_dict()), files["siamfc"])
    rpn = SiamRPNNet(SiamRPNConfig(head="depthwise", **small))  # type: ignore[arg-type]
    files["siamrpn"] = tmp_path / "b.pth"
    torch.save(to_pysot(rpn.state_dict()), files["siamrpn"])
    da = SiamRPNNet(DaSiamRPNConfig(**small))  # type: ignore[arg-type]
    files["dasiamrpn"] = tmp_path / "c.model"
    torch.save(to_dasiamrpn(da.state_dict()), files["dasiamrpn"])
    return files


@pytest.mark.parametrize(("target", "source"), [
    ("siamfc", "siamrpn"), ("siamfc", "dasiamrpn"), ("siamrpn", "siamfc"), ("siamrpn", "dasiamrpn"),
    ("dasiamrpn", "siamfc"), ("dasiamrpn", "siamrpn"),
])
def test_wrong_variant_is_refused_naming_both(official_files: dict[str, Path], target: str,
                                              source: str) -> None:
    with pytest.raises(WeightsError) as info:
        build_tracker(target, weights=official_files[source], device="cpu")
    message = str(info.value)
    assert f"'{target}'" in message and f"'{source}'" in message


def test_unrelated_keys_are_refused(tmp_path: Path) -> None:
    path = save(tmp_path, {"features.0.weight": torch.zeros(1), "classifier.weight": torch.zeros(1)})
    for name in ("siamfc", "siamrpn", "dasiamrpn"):
        with pytest.raises(WeightsError, match=name):
            build_tracker(name, weights=path, device="cpu")
