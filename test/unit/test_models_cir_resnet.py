"""CIResNet-22 (SiamDW): sizes, stride, padding-free crops, receptive field."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from siam_tracking_ros.models.backbones.cir_resnet import CIResNet22, CIRUnit


def _randomise_bn(model: nn.Module) -> None:
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)


def test_output_sizes_and_stride() -> None:
    torch.manual_seed(0)
    net = CIResNet22().eval()
    with torch.no_grad():
        z = net(torch.randn(1, 3, 127, 127))
        x = net(torch.randn(1, 3, 255, 255))
        x2 = net(torch.randn(1, 3, 255 + 16, 255 + 16))
    assert z.shape == (1, 512, 5, 5)
    assert x.shape == (1, 512, 21, 21)
    assert x2.shape[-1] - x.shape[-1] == 2  # 16 more pixels -> 2 more features: stride 8
    assert CIResNet22.stride == 8


def test_cir_unit_crop_equals_unpadded_computation() -> None:
    torch.manual_seed(1)
    unit = CIRUnit(32, 16).eval()
    _randomise_bn(unit)
    x = torch.randn(2, 32, 13, 11)
    with torch.no_grad():
        out = unit(x)
        # the same unit computed without any padding: 3x3 "valid" conv, shortcut cropped to match
        h = F.relu(unit.bn1(unit.conv1(x)))
        h = F.relu(unit.bn2(F.conv2d(h, unit.conv2.weight, padding=0)))
        h = unit.bn3(unit.conv3(h)) + unit.shortcut(x)[:, :, 1:-1, 1:-1]
        expected = F.relu(h)
    assert out.shape == (2, 64, 11, 9)
    torch.testing.assert_close(out, expected)


def test_cir_d_unit_pools_after_crop() -> None:
    torch.manual_seed(2)
    unit = CIRUnit(16, 8, downsample=True).eval()
    x = torch.randn(1, 16, 12, 12)
    with torch.no_grad():
        out = unit(x)
        unpooled = F.relu(unit.residual(x) + unit.shortcut(x))[:, :, 1:-1, 1:-1]
    torch.testing.assert_close(out, F.max_pool2d(unpooled, 2, 2))
    assert out.shape[-1] == 5


def test_stem_crop_equals_unpadded_conv() -> None:
    torch.manual_seed(3)
    net = CIResNet22().eval()
    x = torch.randn(1, 3, 127, 127)
    with torch.no_grad():
        stem = net.relu(net.bn1(net.conv1(x)))[:, :, 2:-2, 2:-2]
        # a padding-free 7x7/2 conv on the image shifted by one pixel samples the same grid
        valid = net.relu(net.bn1(F.conv2d(x[:, :, 1:, 1:], net.conv1.weight, stride=2)))
    torch.testing.assert_close(stem, valid)


def test_whole_backbone_ignores_the_padding_values() -> None:
    """If every padding-affected feature is cropped, changing the padding mode changes nothing."""
    torch.manual_seed(4)
    net = CIResNet22().eval()
    _randomise_bn(net)
    x = torch.randn(1, 3, 127, 127)
    with torch.no_grad():
        zero_padded = net(x)
        for module in net.modules():
            if isinstance(module, nn.Conv2d) and module.padding != (0, 0):
                module.padding_mode = "reflect"
        reflect_padded = net(x)
    # (a one-feature-too-small crop changes outputs by ~5; float reordering by ~1e-5)
    torch.testing.assert_close(zero_padded, reflect_padded, atol=1e-3, rtol=1e-3)


def test_receptive_field_by_gradient_is_in_papers_range() -> None:
    torch.manual_seed(5)
    net = CIResNet22().eval()
    x = torch.randn(1, 3, 127, 127, requires_grad=True)
    out = net(x)
    out[0, :, 2, 2].sum().backward()
    assert x.grad is not None
    rows = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 3)) > 0).flatten()
    cols = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 2)) > 0).flatten()
    extent = int(max(rows.max() - rows.min(), cols.max() - cols.min())) + 1
    assert extent <= CIResNet22.receptive_field
    assert 0.6 * 127 <= extent <= 0.8 * 127
