"""models/assembly.py: networks from specs, a variant added from a spec in this file (issue 11)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from siam_tracking_ros.data.sequences import Sequence
from siam_tracking_ros.models import assembly
from siam_tracking_ros.models.assembly import NetworkSpec, PartSpec, SiameseNet, register_part
from siam_tracking_ros.models.heads.roi_embedding import ROIEmbedding, SINTBackbone, SINTNet
from siam_tracking_ros.models.heads.xcorr import xcorr_depthwise
from siam_tracking_ros.trackers import registry
from siam_tracking_ros.trackers.nanotrack import NanoTrackNet, nanotrack_spec
from siam_tracking_ros.trackers.registry import build_tracker, list_presets, make_config, register_tracker
from siam_tracking_ros.trackers.siamfc import SiamFCConfig, SiamFCTracker, siamfc_spec


class DepthwiseFCHead(nn.Module):
    """A head that only a test knows: depthwise correlation, then a learned channel mix."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.mix = nn.Conv2d(in_channels, 1, kernel_size=1)

    def template(self, z_f: torch.Tensor) -> torch.Tensor:
        return z_f

    def search(self, kernel: torch.Tensor, x_f: torch.Tensor) -> torch.Tensor:
        return self.mix(xcorr_depthwise(x_f, kernel.expand(x_f.shape[0], -1, -1, -1)))


@dataclass
class DepthwiseFCConfig(SiamFCConfig):
    """SiamFC's config as it is; only the head differs."""


@pytest.fixture
def private_registries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts and variants registered in a test vanish after it."""
    monkeypatch.setattr(assembly, "_PARTS", {kind: dict(parts) for kind, parts in assembly._PARTS.items()})
    registry.list_trackers()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_a_head_only_variant_is_new_code_plus_a_spec(private_registries: None, crossing: Sequence) -> None:
    register_part("head", "test_depthwise_fc")(DepthwiseFCHead)

    @register_tracker("test_dwfc", DepthwiseFCConfig, description="SiamFC with a depthwise head")
    def build(config: DepthwiseFCConfig, device: torch.device) -> SiamFCTracker:
        spec = NetworkSpec(siamfc_spec(config).backbone, PartSpec("test_depthwise_fc"),
                           input_rgb=config.input_rgb)
        return SiamFCTracker(SiameseNet(spec), config, device)

    torch.manual_seed(0)
    tracker = build_tracker("test_dwfc", weights="random", device="cpu", scale_num=1)
    assert isinstance(tracker.model.head, DepthwiseFCHead)
    assert tracker.model.head.mix.in_channels == tracker.model.backbone.out_channels == 256
    assert tracker.model.stride == 8 and tracker.model.head_kind == "fc"
    tracker.init(crossing.frame(0), crossing.boxes[0])
    for index in range(1, 4):
        result = tracker.track(crossing.frame(index))
        x, y, w, h = result.box
        assert w > 0 and h > 0 and 0 <= x <= 360 and 0 <= y <= 240
        assert 0.0 <= result.score <= 1.0


def test_assembled_siamfc_equals_the_hand_written_reference() -> None:
    """The spec path gives what backbone + xcorr head compute by hand, weights shared."""
    torch.manual_seed(1)
    net = SiameseNet(siamfc_spec(SiamFCConfig())).eval()
    z, x = torch.rand(1, 3, 127, 127) * 255, torch.rand(2, 3, 255, 255) * 255
    with torch.no_grad():
        kernel = net.backbone(z.flip(1))
        expected = net.head(kernel, net.backbone(x.flip(1)))
        torch.testing.assert_close(net(z, x)["score"], expected)
    assert set(net.state_dict()) == {k for k in net.state_dict() if k.startswith(("backbone.", "head."))}


def test_state_dict_names_are_the_specs_part_names() -> None:
    spec = NetworkSpec(PartSpec("alexnet", {"width_mult": 0.25}),
                       PartSpec("upchannel", {"anchor_num": 5, "hidden": 8}),
                       head_kind="rpn", outputs=("cls", "loc"), head_name="rpn_head")
    net = SiameseNet(spec).eval()
    prefixes = {k.split(".")[0] for k in net.state_dict()}
    assert prefixes == {"backbone", "rpn_head"}
    with torch.no_grad():
        out = net(torch.rand(1, 3, 127, 127) * 255, torch.rand(1, 3, 255, 255) * 255)
    assert out["cls"].shape == (1, 10, 17, 17) and out["loc"].shape == (1, 20, 17, 17)


def test_unknown_parts_and_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown head 'nope'"):
        SiameseNet(NetworkSpec(PartSpec("alexnet"), PartSpec("nope")))
    with pytest.raises(ValueError, match="unknown part kind"):
        register_part("tail", "x")
    with pytest.raises(ValueError, match="declares head_kind"):
        class Wrong(SiameseNet):
            head_kind = "rpn"

        Wrong(siamfc_spec(SiamFCConfig()))


def test_presets_are_one_mechanism() -> None:
    presets = list_presets()
    assert {"dasiamrpn/big", "dasiamrpn/otb", "dasiamrpn/vot", "siamrpnpp/mobilenetv2",
            "siamdw/upchannel", "siamdw/fc"} <= set(presets)
    otb = make_config("dasiamrpn/otb")
    assert (otb.width_mult, otb.hidden, otb.penalty_k, otb.adaptive) == (1.0, 256, 0.22, False)
    assert make_config("dasiamrpn", preset="otb") == otb
    assert make_config("dasiamrpn/otb", lr=0.5).lr == 0.5  # an override beats the preset
    mobile = make_config("siamrpnpp", backbone="mobilenetv2")
    assert (mobile.lr, mobile.rpn_weighted) == (0.5, False)
    assert make_config("siamrpnpp/mobilenetv2") == dataclasses.replace(mobile, preset="mobilenetv2")
    upchannel = make_config("siamdw/upchannel")
    assert (upchannel.head, upchannel.window_influence) == ("upchannel", pytest.approx(0.39))
    assert make_config("siamdw", head="rpn") == upchannel  # the older name of the same head part
    assert make_config("siamdw", preset="rpn") == upchannel
    with pytest.raises(ValueError, match="unknown preset"):
        make_config("dasiamrpn/nope")


def test_tracking_is_deterministic_on_a_real_sequence(crossing: Sequence) -> None:
    """Two trackers from the same weights give the same boxes, frame by frame."""
    boxes = []
    for _ in range(2):
        torch.manual_seed(3)
        tracker = build_tracker("siamrpn", weights="random", device="cpu", width_mult=0.25, hidden=16)
        tracker.init(crossing.frame(0), crossing.boxes[0])
        boxes.append([tracker.track(crossing.frame(i)).box for i in range(1, 6)])
    np.testing.assert_array_equal(np.array(boxes[0]), np.array(boxes[1]))


def test_the_backbone_is_a_config_field() -> None:
    """SiamRPN on SiamDW's CIResNet-22: a config choice, the head gets the backbone's channels."""
    torch.manual_seed(2)
    tracker = build_tracker("siamrpn", weights="random", device="cpu", backbone="cir_resnet22",
                            hidden=32)
    assert tracker.model.rpn_head.template_cls_conv.in_channels == 512
    with torch.no_grad():
        out = tracker.model(torch.rand(1, 3, 127, 127) * 255, torch.rand(1, 3, 255, 255) * 255)
    assert out["cls"].shape == (1, 10, 17, 17)
    for name in ("siamfc", "siamrpn", "siamrpnpp", "siamdw", "dasiamrpn", "c_rpn", "siammask",
                 "cfnet", "rasnet"):
        assert hasattr(make_config(name), "backbone"), name
    with pytest.raises(ValueError, match="resnet50"):
        make_config("siammask", backbone="alexnet")


@pytest.mark.parametrize(("version", "backbone", "channels", "score_size"), [
    ("v1", "mobilenetv3", 48, 16), ("v2", "mobilenetv3", 48, 16), ("v3", "mobilenetv3", 96, 15),
    ("v2", "mobilenetv2", 96, 16),
])
def test_nanotrack_is_a_spec(version: str, backbone: str, channels: int, score_size: int) -> None:
    """NanoTrack's network is the assembly's: backbone part + BAN head part, official names kept,
    the stride (16) declared by the backbone, ``search`` equal to the head run by hand."""
    torch.manual_seed(4)
    net = NanoTrackNet(version, backbone).eval()
    assert isinstance(net, SiameseNet) and net.spec == nanotrack_spec(version, backbone)
    assert {k.split(".")[0] for k in net.state_dict()} == {"backbone", "ban_head"}
    assert net.backbone.out_channels == channels and net.stride == 16 and net.head_kind == "ban"
    z, x = torch.rand(1, 3, 127, 127) * 255, torch.rand(1, 3, 255, 255) * 255
    with torch.no_grad():
        out = net(z, x)
        cls, loc = net.ban_head.correlate(net.ban_head.prepare(net.backbone(z)), net.backbone(x))
    assert out["cls"].shape == (1, 2, score_size, score_size)
    torch.testing.assert_close(out["cls"], cls)
    torch.testing.assert_close(out["loc"], loc)


def test_sint_parts_come_from_its_spec() -> None:
    """SINT registers its parts (``sint_vgg``, ``roi_embedding``); its network builds them from
    :func:`sint_spec` under the names it always had."""
    assert "sint_vgg" in assembly.list_parts("backbone") and "roi_embedding" in assembly.list_parts("head")
    torch.manual_seed(5)
    net = SINTNet((8, 8, 16, 16, 16), (1, 1, 1, 1, 1), pool_size=3, fc_dim=32)
    assert net.spec.backbone == PartSpec("sint_vgg", {"widths": (8, 8, 16, 16, 16), "convs": (1, 1, 1, 1, 1)})
    assert isinstance(net.backbone, SINTBackbone) and isinstance(net.embedding, ROIEmbedding)
    assert net.embedding.fc[0].in_features == 16 * 3 * 3  # the deeper level's channels, from the backbone
    assert {k.split(".")[0] for k in net.state_dict()} == {"mean", "std", "backbone", "embedding"}


def test_every_score_map_network_declares_its_stride() -> None:
    """Training reads the stride off the network (``network_stride``); every variant with a score
    map declares it, equal to its config's stride field. SINT has no score map."""
    for name in registry.list_trackers():
        if name in ("sint", "sint_pp"):
            continue
        tracker = build_tracker(name, weights="random", device="cpu")
        config = tracker.config
        expected = next(getattr(config, f) for f in ("stride", "total_stride", "anchor_stride")
                        if hasattr(config, f))
        assert isinstance(tracker.model.stride, int) and tracker.model.stride == expected, name


def test_head_names_a_registered_head_part_in_every_variant() -> None:
    """``head`` means one thing: wherever a config has it, it is the network's head part."""
    from siam_tracking_ros.models.assembly import list_parts
    from siam_tracking_ros.trackers.registry import list_trackers

    heads = set(list_parts("head"))
    with_head = []
    for name in [*list_trackers(), *list_presets()]:
        config = make_config(name)
        if hasattr(config, "head") and isinstance(config.head, str):
            assert config.head in heads, (name, config.head)
            with_head.append(name)
    assert {"siamrpn", "siamdw", "siamdw/upchannel", "dasiamrpn"} <= set(with_head)
