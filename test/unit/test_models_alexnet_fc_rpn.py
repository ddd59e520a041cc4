"""AlexNet backbones, the SiamFC head and the RPN heads against plain references."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from siam_tracking_ros.core.anchors import generate_anchors
from siam_tracking_ros.models.backbones.alexnet import AlexNet, pysot_alexnet, siamfc_alexnet
from siam_tracking_ros.models.heads.fc import FCHead
from siam_tracking_ros.models.heads.rpn import DepthwiseRPN, MultiRPN, UpChannelRPN
from siam_tracking_ros.trackers.siamfc import SiamFCConfig, SiamFCNet
from siam_tracking_ros.trackers.siamrpn import SiamRPNConfig, SiamRPNNet


def randomise_batchnorm(module: nn.Module, seed: int = 0) -> None:
    """Give every batch norm non-trivial statistics so eval-mode outputs exercise them."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def test_backbone_output_sizes_and_widths() -> None:
    net = AlexNet(pysot_alexnet(0.25)).eval()
    assert [s[0].out_channels for s in net.stages()] == [24, 64, 96, 96, 64]
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 127, 127)).shape == (1, 64, 6, 6)
        assert net(torch.zeros(1, 3, 255, 255)).shape == (1, 64, 22, 22)
        assert net(torch.zeros(1, 3, 271, 271)).shape == (1, 64, 24, 24)


def test_layouts_match_reference_descriptions() -> None:
    fc = AlexNet(siamfc_alexnet())
    assert [s[0].groups for s in fc.stages()] == [1, 2, 1, 2, 2]
    assert len(fc.conv5) == 1  # siamfc-pytorch: no BN after conv5
    assert fc.conv1[1].eps == 1e-6
    big = AlexNet(pysot_alexnet(2.0))
    assert [s[0].out_channels for s in big.stages()] == [192, 512, 768, 768, 512]
    assert isinstance(big.conv5[1], nn.BatchNorm2d)
    # siamfc AlexNetV1 parameter count: grouped convs halve conv2/4/5
    convs = sum(p.numel() for n, p in fc.named_parameters() if n.endswith("0.weight"))
    assert convs == 96 * 3 * 121 + 256 * 48 * 25 + 384 * 256 * 9 + 384 * 192 * 9 + 256 * 192 * 9


def reference_alexnet(net: AlexNet, x: torch.Tensor) -> torch.Tensor:
    """Conv / BN / ReLU / pool spelled out with functional ops, pool before ReLU as in pysot."""
    for index, stage in enumerate(net.stages()):
        conv = stage[0]
        x = F.conv2d(x, conv.weight, conv.bias, stride=conv.stride, groups=conv.groups)
        if len(stage) > 1 and isinstance(stage[1], nn.BatchNorm2d):
            bn = stage[1]
            x = (x - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(bn.running_var.view(1, -1, 1, 1)
                                                                     + bn.eps)
            x = x * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
        if index < 2:
            x = F.max_pool2d(x, 3, 2)
        if index < 4:
            x = F.relu(x)
    return x


@pytest.mark.parametrize("layout", [siamfc_alexnet(), pysot_alexnet(0.25)])
def test_backbone_matches_functional_reference(layout: object) -> None:
    torch.manual_seed(0)
    net = AlexNet(layout).eval()  # type: ignore[arg-type]
    randomise_batchnorm(net)
    x = torch.rand(2, 3, 127, 127) * 255
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference_alexnet(net, x), rtol=1e-4, atol=1e-3)


def test_fc_head_is_scaled_correlation() -> None:
    g = torch.Generator().manual_seed(1)
    z, x = torch.randn(1, 8, 3, 3, generator=g), torch.randn(3, 8, 9, 9, generator=g)
    head = FCHead(out_scale=0.001)
    with torch.no_grad():
        out = head(z, x)
        assert out.shape == (3, 1, 7, 7)
        for b in range(3):
            torch.testing.assert_close(out[b:b + 1], 0.001 * F.conv2d(x[b:b + 1], z))
        head.adjust.bias.fill_(0.5)
        torch.testing.assert_close(head(z, x), 0.001 * F.conv2d(x, z) + 0.5)


def test_siamfc_net_flips_bgr_to_rgb() -> None:
    torch.manual_seed(0)
    net = SiamFCNet(SiamFCConfig()).eval()
    z, x = torch.rand(1, 3, 127, 127) * 255, torch.rand(1, 3, 255, 255) * 255
    with torch.no_grad():
        score = net(z, x)["score"]
        assert score.shape == (1, 1, 17, 17)
        expected = net.head(net.backbone(z.flip(1)), net.backbone(x.flip(1)))
        torch.testing.assert_close(score, expected)
    assert SiamFCNet.head_kind == "fc"


def test_up_channel_rpn_matches_per_kernel_loop() -> None:
    torch.manual_seed(2)
    k, c, hidden = 2, 6, 4
    head = UpChannelRPN(k, c, hidden).eval()
    z_f, x_f = torch.randn(2, c, 6, 6), torch.randn(2, c, 12, 12)
    with torch.no_grad():
        cls, loc = head(z_f, x_f)
        assert cls.shape == (2, 2 * k, 7, 7) and loc.shape == (2, 4 * k, 7, 7)
        for b in range(2):
            cls_kernel = head.template_cls_conv(z_f[b:b + 1])[0]  # (2k*hidden, 4, 4)
            search = head.search_cls_conv(x_f[b:b + 1])
            for o in range(2 * k):
                kernel = cls_kernel[o * hidden:(o + 1) * hidden].unsqueeze(0)
                torch.testing.assert_close(cls[b, o], F.conv2d(search, kernel)[0, 0])
            loc_kernel = head.template_loc_conv(z_f[b:b + 1])[0].reshape(4 * k, hidden, 4, 4)
            raw = F.conv2d(head.search_loc_conv(x_f[b:b + 1]), loc_kernel)
            torch.testing.assert_close(loc[b:b + 1], head.loc_adjust(raw))


def test_depthwise_rpn_matches_channel_loop() -> None:
    torch.manual_seed(3)
    head = DepthwiseRPN(anchor_num=2, in_channels=6, out_channels=5).eval()
    randomise_batchnorm(head)
    z_f, x_f = torch.randn(1, 6, 7, 7), torch.randn(1, 6, 15, 15)
    with torch.no_grad():
        cls, loc = head(z_f, x_f)
        assert cls.shape == (1, 4, 9, 9) and loc.shape == (1, 8, 9, 9)
        branch = head.cls
        kernel, search = branch.conv_kernel(z_f), branch.conv_search(x_f)
        channels = [F.conv2d(search[:, i:i + 1], kernel[:, i:i + 1]) for i in range(5)]
        torch.testing.assert_close(cls, branch.head(torch.cat(channels, dim=1)))
    names = {n.split(".")[1] for n in head.state_dict() if n.startswith("cls.")}
    assert names == {"conv_kernel", "conv_search", "head"}


@pytest.mark.parametrize("weighted", [True, False])
def test_multi_rpn_fusion(weighted: bool) -> None:
    torch.manual_seed(4)
    head = MultiRPN(anchor_num=1, in_channels=[4, 4, 4], weighted=weighted).eval()
    if weighted:
        with torch.no_grad():
            head.cls_weight.copy_(torch.tensor([0.1, 1.0, -0.5]))
            head.loc_weight.copy_(torch.tensor([2.0, 0.0, 0.3]))
    z = [torch.randn(1, 4, 5, 5) for _ in range(3)]
    x = [torch.randn(1, 4, 9, 9) for _ in range(3)]
    with torch.no_grad():
        cls, loc = head(z, x)
        outs = [getattr(head, f"rpn{i + 2}")(z[i], x[i]) for i in range(3)]
        if weighted:
            wc, wl = torch.softmax(head.cls_weight, 0), torch.softmax(head.loc_weight, 0)
        else:
            wc = wl = torch.full((3,), 1 / 3)
        torch.testing.assert_close(cls, sum(wc[i] * outs[i][0] for i in range(3)))
        torch.testing.assert_close(loc, sum(wl[i] * outs[i][1] for i in range(3)))
    assert ("cls_weight" in head.state_dict()) == weighted
    assert {"rpn2", "rpn3", "rpn4"} <= {n.split(".")[0] for n in head.state_dict()}


@pytest.mark.parametrize("head", ["upchannel", "depthwise"])
def test_siamrpn_net_geometry_follows_config(head: str) -> None:
    torch.manual_seed(5)
    config = SiamRPNConfig(head=head, width_mult=0.25, hidden=16, instance_size=287)
    net = SiamRPNNet(config).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, 127, 127) * 255, torch.rand(1, 3, 287, 287) * 255)
    assert config.score_size == 21 and config.anchor_num == 5
    assert out["cls"].shape == (1, 10, 21, 21) and out["loc"].shape == (1, 20, 21, 21)
    anchors = generate_anchors(config.score_size_for(287), config.anchor_stride, config.anchor_ratios,
                               config.anchor_scales)
    assert anchors.shape == (5 * 21 * 21, 4)
    assert SiamRPNNet.head_kind == "rpn"
