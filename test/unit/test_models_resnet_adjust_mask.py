"""Backbones, adjust layers and the SiamMask mask branch against shapes and plain references.

Shape checks run on the ``meta`` device (no arithmetic); value checks use small tensors and
functional re-computations written from the published layer definitions.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from siam_tracking_ros.models.backbones.mobilenetv2 import MobileNetV2
from siam_tracking_ros.models.backbones.resnet import Bottleneck, DilatedResNet50
from siam_tracking_ros.models.heads.mask import MaskCorr, Refine
from siam_tracking_ros.models.necks.adjust import AdjustAllLayer, AdjustLayer

META = torch.device("meta")


def _meta_shapes(net: nn.Module, size: int) -> list[tuple[int, ...]]:
    return [tuple(t.shape) for t in net(torch.empty(1, 3, size, size, device=META))]


def _randomize_bn(module: nn.Module, generator: torch.Generator) -> None:
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=generator) * 0.1)
            bn.running_var.copy_(torch.rand(bn.num_features, generator=generator) + 0.5)
            bn.weight.data.copy_(torch.rand(bn.num_features, generator=generator) + 0.5)
            bn.bias.data.copy_(torch.randn(bn.num_features, generator=generator) * 0.1)


def _bn(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


# --- ResNet-50 ---------------------------------------------------------------------------------

def test_dilated_resnet_shapes_for_template_and_search() -> None:
    with META:
        net = DilatedResNet50((0, 1, 2, 3, 4))
    assert _meta_shapes(net, 127) == [(1, 64, 61, 61), (1, 256, 31, 31), (1, 512, 15, 15),
                                      (1, 1024, 15, 15), (1, 2048, 15, 15)]
    assert _meta_shapes(net, 255) == [(1, 64, 125, 125), (1, 256, 63, 63), (1, 512, 31, 31),
                                      (1, 1024, 31, 31), (1, 2048, 31, 31)]


def test_dilated_resnet_builds_only_the_stages_it_uses() -> None:
    with META:
        siammask = DilatedResNet50((0, 1, 2, 3))
        siamrpnpp = DilatedResNet50((2, 3, 4))
    assert not any(k.startswith("layer4.") for k in siammask.state_dict())
    assert siammask.channels == (64, 256, 512, 1024)
    assert siamrpnpp.channels == (512, 1024, 2048)
    with pytest.raises(ValueError, match="used_layers"):
        DilatedResNet50((2, 5))


@pytest.fixture(scope="module")
def resnet() -> DilatedResNet50:
    return DilatedResNet50((2, 3, 4)).eval()


def test_dilated_resnet_matches_pysot_layer_geometry(resnet: DilatedResNet50) -> None:
    net = resnet
    shortcuts = {name: net.get_submodule(f"{name}.0.downsample.0")
                 for name in ("layer1", "layer2", "layer3", "layer4")}
    # (kernel, stride, padding, dilation) of the projection shortcuts
    assert [(m.kernel_size[0], m.stride[0], m.padding[0], m.dilation[0]) for m in shortcuts.values()] == [
        (1, 1, 0, 1), (3, 2, 0, 1), (3, 1, 1, 1), (3, 1, 2, 2)]
    # first / later 3x3 convs: stride-2 un-padded in layer2, half dilation in the first dilated block
    conv2 = {(layer, block): net.get_submodule(f"{layer}.{block}.conv2")
             for layer in ("layer2", "layer3", "layer4") for block in (0, 1)}
    assert [(c.stride[0], c.padding[0], c.dilation[0]) for c in conv2.values()] == [
        (2, 0, 1), (1, 1, 1), (1, 1, 1), (1, 2, 2), (1, 2, 2), (1, 4, 4)]
    assert len(net.layer1) == 3 and len(net.layer2) == 4 and len(net.layer3) == 6 and len(net.layer4) == 3


def _bottleneck_reference(block: Bottleneck, x: torch.Tensor, stride: int, padding: int,
                          dilation: int, shortcut_padding: int, shortcut_dilation: int) -> torch.Tensor:
    out = F.relu(_bn(F.conv2d(x, block.conv1.weight), block.bn1))
    out = F.relu(_bn(F.conv2d(out, block.conv2.weight, stride=stride, padding=padding,
                              dilation=dilation), block.bn2))
    out = _bn(F.conv2d(out, block.conv3.weight), block.bn3)
    shortcut = x
    if block.downsample is not None:
        conv, bn = block.downsample[0], block.downsample[1]
        shortcut = _bn(F.conv2d(x, conv.weight, stride=stride, padding=shortcut_padding,
                                dilation=shortcut_dilation), bn)
    return F.relu(out + shortcut)


@pytest.mark.parametrize(("layer", "block", "stride", "padding", "dilation", "sc_padding", "sc_dilation"), [
    ("layer2", 0, 2, 0, 1, 0, 1),
    ("layer4", 0, 1, 2, 2, 2, 2),
    ("layer4", 1, 1, 4, 4, 0, 1),
])
def test_bottleneck_matches_functional_reference(resnet: DilatedResNet50, layer: str, block: int,
                                                 stride: int, padding: int, dilation: int,
                                                 sc_padding: int, sc_dilation: int) -> None:
    generator = torch.Generator().manual_seed(3)
    module = resnet.get_submodule(f"{layer}.{block}")
    _randomize_bn(module, generator)
    channels = module.conv1.in_channels
    x = torch.randn(1, channels, 11, 11, generator=generator)
    with torch.no_grad():
        ours = module(x)
        expected = _bottleneck_reference(module, x, stride, padding, dilation, sc_padding, sc_dilation)
    assert ours.shape == expected.shape
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)


# --- MobileNetV2 -------------------------------------------------------------------------------

def test_mobilenetv2_shapes_channels_and_layout() -> None:
    with META:
        net = MobileNetV2(width_mult=1.4, used_layers=(3, 5, 7))
    assert net.channels == (44, 134, 448)
    state = net.state_dict()
    assert state["layer0.0.weight"].shape == (44, 3, 3, 3)
    assert state["layer1.0.conv.0.weight"].shape == (44, 44, 1, 1)  # expansion conv even for t=1
    assert state["layer7.0.conv.6.weight"].shape == (448, 224 * 6, 1, 1)
    assert _meta_shapes(net, 127) == [(1, 44, 15, 15), (1, 134, 15, 15), (1, 448, 15, 15)]
    assert _meta_shapes(net, 255) == [(1, 44, 31, 31), (1, 134, 31, 31), (1, 448, 31, 31)]


def test_inverted_residual_matches_functional_reference() -> None:
    generator = torch.Generator().manual_seed(4)
    net = MobileNetV2().eval()
    block = net.layer6[1]  # dilation 4, residual
    _randomize_bn(block, generator)
    x = torch.randn(1, 224, 9, 9, generator=generator)
    conv = block.conv
    hidden = conv[0].out_channels
    with torch.no_grad():
        out = F.relu6(_bn(F.conv2d(x, conv[0].weight), conv[1]))
        out = F.relu6(_bn(F.conv2d(out, conv[3].weight, padding=4, dilation=4, groups=hidden), conv[4]))
        expected = x + _bn(F.conv2d(out, conv[6].weight), conv[7])
        torch.testing.assert_close(block(x), expected, rtol=1e-4, atol=1e-4)


# --- adjust layers -----------------------------------------------------------------------------

def test_adjust_layer_crops_template_centre_only() -> None:
    generator = torch.Generator().manual_seed(5)
    layer = AdjustLayer(32, 16).eval()
    _randomize_bn(layer, generator)
    x = torch.randn(2, 32, 15, 15, generator=generator)
    with torch.no_grad():
        full = _bn(F.conv2d(x, layer.downsample[0].weight), layer.downsample[1])
        torch.testing.assert_close(layer(x, crop=True), full[:, :, 4:11, 4:11])
        torch.testing.assert_close(layer(x), full)
        search = torch.randn(1, 32, 31, 31, generator=generator)
        assert layer(search, crop=False).shape == (1, 16, 31, 31)


def test_adjust_all_layer_names_and_levels() -> None:
    multi = AdjustAllLayer([512, 1024, 2048], [256, 256, 256])
    assert {k.split(".")[0] for k in multi.state_dict()} == {"downsample2", "downsample3", "downsample4"}
    single = AdjustAllLayer([1024], [256])
    assert "downsample.downsample.0.weight" in single.state_dict()
    feats = [torch.empty(1, c, 15, 15, device=META) for c in (512, 1024, 2048)]
    out = multi.to(META)(feats, crop=True)  # small enough to build on the CPU first
    assert [tuple(t.shape) for t in out] == [(1, 256, 7, 7)] * 3
    with pytest.raises(ValueError, match="equal length"):
        AdjustAllLayer([512, 1024], [256])


# --- mask branch -------------------------------------------------------------------------------

def test_mask_head_outputs_63x63_per_position() -> None:
    with META:
        head = MaskCorr()
    kernel = head.template(torch.empty(1, 256, 7, 7, device=META))
    mask, feature = head.search_with_feature(kernel, torch.empty(1, 256, 31, 31, device=META))
    assert tuple(mask.shape) == (1, 63 * 63, 25, 25)
    assert tuple(feature.shape) == (1, 256, 25, 25)


def test_mask_correlation_matches_per_channel_loop() -> None:
    generator = torch.Generator().manual_seed(6)
    head = MaskCorr(in_channels=6, hidden=5, out_channels=9).eval()
    _randomize_bn(head, generator)
    z = torch.randn(2, 6, 7, 7, generator=generator)
    x = torch.randn(2, 6, 13, 13, generator=generator)
    with torch.no_grad():
        mask, feature = head.search_with_feature(head.template(z), x)
        kernel = head.conv_kernel(z)
        search = head.conv_search(x)
        expected = torch.stack([
            torch.cat([F.conv2d(search[b:b + 1, c:c + 1], kernel[b:b + 1, c:c + 1]) for c in range(5)], 1)[0]
            for b in range(2)])
        torch.testing.assert_close(feature, expected, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(mask, head.head(expected), rtol=1e-4, atol=1e-4)


def _search_skips(generator: torch.Generator) -> list[torch.Tensor]:
    return [torch.randn(1, 64, 125, 125, generator=generator),
            torch.randn(1, 256, 63, 63, generator=generator),
            torch.randn(1, 512, 31, 31, generator=generator)]


def test_refine_shapes_for_every_cell_of_a_255_search() -> None:
    with META:
        refine = Refine()
    skips = [torch.empty(1, c, s, s, device=META) for c, s in ((64, 125), (256, 63), (512, 31))]
    corr = torch.empty(1, 256, 25, 25, device=META)
    for pos in ((0, 0), (12, 12), (24, 24), (3, 20)):
        assert tuple(refine(skips, corr, pos).shape) == (1, 1, 127, 127)
        windows = Refine.skip_windows(skips, pos)
        assert [tuple(w.shape) for w in windows] == [(1, 64, 61, 61), (1, 256, 31, 31), (1, 512, 15, 15)]
    with pytest.raises(ValueError, match="outside"):
        Refine.skip_windows(skips, (25, 0))


def test_refine_windows_are_padded_crops_around_the_cell() -> None:
    generator = torch.Generator().manual_seed(7)
    skips = _search_skips(generator)
    p0, p1, p2 = Refine.skip_windows(skips, (2, 20))
    # row 2 -> stem rows 8-16 .. 8-16+60 (first 8 rows are zero padding), col 20 -> 64 .. 124
    torch.testing.assert_close(p0[:, :, 8:, :], skips[0][:, :, 0:53, 64:125])
    assert torch.count_nonzero(p0[:, :, :8, :]) == 0
    torch.testing.assert_close(p1[:, :, 4:, :], skips[1][:, :, 0:27, 32:63])
    torch.testing.assert_close(p2[:, :, 2:, :], skips[2][:, :, 0:13, 16:31])


def test_refine_output_depends_only_on_its_window() -> None:
    generator = torch.Generator().manual_seed(8)
    refine = Refine().eval()
    skips = _search_skips(generator)
    corr = torch.randn(1, 256, 25, 25, generator=generator)
    pos = (12, 12)
    with torch.no_grad():
        base = refine(skips, corr, pos)
        outside = [s.clone() for s in skips]
        outside[0][:, :, :, :8] += 5.0  # stem columns left of the 61-wide window (32..92)
        outside[2][:, :, 0, :] += 5.0  # layer2 row 0, above rows 8..22
        other_cell = corr.clone()
        other_cell[:, :, 3, 4] += 5.0
        torch.testing.assert_close(refine(outside, other_cell, pos), base)
        inside = [s.clone() for s in skips]
        inside[2][:, :, 15, 15] += 5.0
        assert not torch.allclose(refine(inside, corr, pos), base)
