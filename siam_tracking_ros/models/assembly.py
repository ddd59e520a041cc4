"""Siamese networks assembled from specs: backbone -> neck? -> template transform? -> head.

A :class:`NetworkSpec` names each part by a registered type plus keyword arguments
(:class:`PartSpec`); :class:`SiameseNet` builds and runs them:

- ``features(image, template)`` = ``neck(backbone(image), crop=template)`` (BGR 0..255 in; flipped
  to RGB first when ``input_rgb``),
- ``template(z)`` = ``head.template(transform(features(z)))``, computed once per target,
- ``search(kernels, x)`` = ``head.search(kernels, features(x))`` as a dict (tuple outputs are named
  by ``spec.outputs``),
- ``stride``: the score map's stride (the backbone's), read by training.

Parts are registered with :func:`register_part` (``kind`` = ``backbone | neck | transform | head``);
heads and necks get the channels of what feeds them as ``in_channels`` when their factory takes
it. A variant that only changes the head registers its head and writes a spec: see
docs/ARCHITECTURE.md ("Add a variant").
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from siam_tracking_ros.models.backbones.alexnet import AlexNet, AlexNetLevels, pysot_alexnet, siamfc_alexnet
from siam_tracking_ros.models.backbones.cir_resnet import CIResNet22, CIRNeck
from siam_tracking_ros.models.backbones.mobilenetv2 import MobileNetV2
from siam_tracking_ros.models.backbones.mobilenetv2_imagenet import (
    ImageNetMobileNetV2,
    ImageNetMobileNetV2Levels,
)
from siam_tracking_ros.models.backbones.mobilenetv3 import BLOCK_LISTS, MobileNetV3
from siam_tracking_ros.models.backbones.resnet import DilatedResNet50
from siam_tracking_ros.models.heads.attention import AttentionWeightedTemplate
from siam_tracking_ros.models.heads.ban import BANHeadV1, BANHeadV2, BANHeadV3
from siam_tracking_ros.models.heads.cascade_rpn import CascadeRPN
from siam_tracking_ros.models.heads.cf_layer import CorrelationFilterLayer
from siam_tracking_ros.models.heads.fc import FCHead
from siam_tracking_ros.models.heads.rpn import DepthwiseRPN, MultiRPN, UpChannelRPN
from siam_tracking_ros.models.necks.adjust import AdjustAllLayer

KINDS = ("backbone", "neck", "transform", "head")
PartFactory = Callable[..., nn.Module]
_PARTS: dict[str, dict[str, PartFactory]] = {kind: {} for kind in KINDS}


@dataclass(frozen=True)
class PartSpec:
    """One part: its registered ``type`` and the keyword arguments of its factory."""

    type: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NetworkSpec:
    """A whole Siamese network; ``*_name`` are the attributes (state-dict prefixes) of the parts."""

    backbone: PartSpec
    head: PartSpec
    neck: PartSpec | None = None
    transform: PartSpec | None = None
    #: training objective family (``fc``, ``rpn``, ``cascade_rpn``, ...)
    head_kind: str = "fc"
    #: names of a head's tuple outputs (a head returning a dict keeps its keys)
    outputs: tuple[str, ...] = ("score",)
    head_name: str = "head"
    transform_name: str = "transform"
    #: the network was trained on RGB crops (siamfc-pytorch); frames arrive BGR
    input_rgb: bool = False
    #: ``template`` returns ``(template features, head kernels)`` (DaSiamRPN's distractor windows)
    template_features: bool = False


def register_part(kind: str, name: str) -> Callable[[PartFactory], PartFactory]:
    """Decorator: make ``factory(**kwargs) -> nn.Module`` available as part ``name`` of ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"unknown part kind '{kind}'; valid: {', '.join(KINDS)}")

    def decorate(factory: PartFactory) -> PartFactory:
        if _PARTS[kind].get(name, factory) is not factory:
            raise ValueError(f"{kind} '{name}' is registered twice")
        _PARTS[kind][name] = factory
        return factory

    return decorate


def list_parts(kind: str) -> list[str]:
    """Registered part names of one kind, sorted."""
    return sorted(_PARTS[kind])


def build_part(kind: str, spec: PartSpec, in_channels: Any = None) -> nn.Module:
    """Build one part; ``in_channels`` is passed when the factory takes it and the spec does not."""
    if spec.type not in _PARTS[kind]:
        raise ValueError(f"unknown {kind} '{spec.type}'; valid: {', '.join(list_parts(kind))}")
    factory = _PARTS[kind][spec.type]
    kwargs = dict(spec.kwargs)
    if in_channels is not None and "in_channels" not in kwargs \
            and "in_channels" in inspect.signature(factory).parameters:
        kwargs["in_channels"] = in_channels
    return factory(**kwargs)


def out_channels(module: nn.Module, default: Any = None) -> Any:
    """Output channels a part declares (``out_channels`` or ``channels``), else ``default``."""
    for name in ("out_channels", "channels"):
        value = getattr(module, name, None)
        if value is not None:
            return tuple(value) if isinstance(value, list | tuple) else value
    return default


class SiameseNet(nn.Module):
    """The network of a :class:`NetworkSpec` (see the module docstring).

    A subclass may declare ``head_kind`` as class data (read without building); it must match
    its spec's.
    """

    head_kind: str = ""

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        declared = type(self).head_kind
        if declared and declared != spec.head_kind:
            raise ValueError(f"{type(self).__name__} declares head_kind '{declared}', its spec "
                             f"'{spec.head_kind}'")
        self.spec = spec
        self.head_kind = spec.head_kind
        self.input_rgb = spec.input_rgb
        self.backbone = build_part("backbone", spec.backbone)
        channels = out_channels(self.backbone)
        self.neck: nn.Module | None = None
        if spec.neck is not None:
            self.neck = build_part("neck", spec.neck, channels)
            channels = out_channels(self.neck, spec.neck.kwargs.get("out_channels", channels))
            if isinstance(channels, list | tuple) and len(channels) == 1:
                channels = channels[0]  # a single-level neck gives one map
        self._transform_name = spec.transform_name if spec.transform is not None else ""
        if spec.transform is not None:
            self.add_module(spec.transform_name, build_part("transform", spec.transform, channels))
        self.add_module(spec.head_name, build_part("head", spec.head, channels))
        self._head_name = spec.head_name

    @property
    def stride(self) -> int:
        """Stride of the score map in search-crop pixels (the backbone's)."""
        return int(getattr(self.backbone, "stride", 8))

    @property
    def head_module(self) -> nn.Module:
        """The head part (attribute ``spec.head_name``)."""
        return getattr(self, self._head_name)

    def backbone_maps(self, image: torch.Tensor) -> Any:
        """The backbone's maps of BGR 0..255 crops (what a frozen-feature cache stores)."""
        return self.backbone(image.flip(1) if self.input_rgb else image)

    def embed(self, maps: Any, template: bool = False) -> Any:
        """The neck over backbone maps; templates get the neck's centre crop."""
        return maps if self.neck is None else self.neck(maps, crop=template)

    def features(self, image: torch.Tensor, template: bool = False) -> Any:
        """Backbone (+ neck) features of BGR 0..255 crops; templates get the neck's centre crop."""
        return self.embed(self.backbone_maps(image), template)

    def template(self, z: torch.Tensor) -> Any:
        """Head kernels of template crops (once per target)."""
        return self.template_from_maps(self.backbone_maps(z))

    def template_from_maps(self, maps: Any) -> Any:
        """:meth:`template` from the template's backbone maps."""
        feats = self.embed(maps, template=True)
        if self._transform_name:
            feats = getattr(self, self._transform_name)(feats)
        kernels = self.head_module.template(feats)
        return (feats, kernels) if self.spec.template_features else kernels

    def search(self, features: Any, x: torch.Tensor, return_features: bool = False) -> dict[str, Any]:
        """Head outputs for search crops (plus ``"x_f"``, the first feature level, when asked)."""
        return self.search_from_maps(features, self.backbone_maps(x), return_features)

    def search_from_maps(self, features: Any, maps: Any, return_features: bool = False) -> dict[str, Any]:
        """:meth:`search` from the search crops' backbone maps."""
        x_f = self.embed(maps)
        out = self.head_module.search(features[1] if self.spec.template_features else features, x_f)
        out = dict(out) if isinstance(out, Mapping) else dict(zip(self.spec.outputs, _as_tuple(out),
                                                                  strict=True))
        if return_features:
            out["x_f"] = x_f if isinstance(x_f, torch.Tensor) else x_f[0]
        return out

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> dict[str, Any]:
        return self.search(self.template(z), x)


def _as_tuple(value: Any) -> tuple:
    return tuple(value) if isinstance(value, tuple | list) else (value,)


# --- the stock parts ------------------------------------------------------------------------------


@register_part("backbone", "alexnet")
def alexnet_backbone(layout: str = "pysot", width_mult: float = 1.0, depth: int = 5) -> AlexNet:
    """AlexNet (``layout = siamfc|pysot``, see :mod:`..backbones.alexnet`), cut after ``depth``."""
    if layout not in ("siamfc", "pysot"):
        raise ValueError(f"unknown backbone '{layout}' (siamfc|pysot)")
    return AlexNet(siamfc_alexnet() if layout == "siamfc" else pysot_alexnet(width_mult), depth)


@register_part("backbone", "mobilenetv3")
def mobilenetv3_backbone(blocks: str = "small_stride16") -> MobileNetV3:
    """NanoTrack's MobileNetV3-small at stride 16 (``blocks``: a name of :data:`BLOCK_LISTS`)."""
    if blocks not in BLOCK_LISTS:
        raise ValueError(f"unknown MobileNetV3 block list '{blocks}'; valid: {', '.join(BLOCK_LISTS)}")
    return MobileNetV3(BLOCK_LISTS[blocks])


@register_part("head", "cascade_rpn")
def cascade_rpn_head(in_channels: tuple[int, ...], anchor_num: int = 5, hidden: int = 256,
                     rpn: str = "upchannel", ftb_kernel: int = 3) -> CascadeRPN:
    """C-RPN's cascade over backbone levels (deepest first)."""
    return CascadeRPN(in_channels, anchor_num, hidden, rpn, ftb_kernel)


register_part("backbone", "alexnet_levels")(AlexNetLevels)
register_part("backbone", "resnet50")(DilatedResNet50)
register_part("backbone", "mobilenetv2")(MobileNetV2)
register_part("backbone", "cir_resnet22")(CIResNet22)
register_part("backbone", "mobilenetv2_imagenet")(ImageNetMobileNetV2)
register_part("backbone", "mobilenetv2_imagenet_levels")(ImageNetMobileNetV2Levels)
register_part("neck", "adjust")(AdjustAllLayer)
register_part("neck", "cir")(CIRNeck)
register_part("transform", "rasnet_attention")(AttentionWeightedTemplate)
register_part("transform", "correlation_filter")(CorrelationFilterLayer)
register_part("head", "upchannel")(UpChannelRPN)
register_part("head", "depthwise")(DepthwiseRPN)
register_part("head", "multi_rpn")(MultiRPN)
register_part("head", "fc")(FCHead)
register_part("head", "ban_v1")(BANHeadV1)
register_part("head", "ban_v2")(BANHeadV2)
register_part("head", "ban_v3")(BANHeadV3)

#: output stride of the ImageNet MobileNetV2 backbone (``features[:14]``)
MOBILENETV2_STRIDE = 16
#: its output channels
MOBILENETV2_CHANNELS = 96


def mobilenetv2_parts(adjust_channels: int) -> tuple[PartSpec, PartSpec]:
    """Backbone and neck specs of the ImageNet MobileNetV2 option: ``features[:14]`` (8x8 maps for
    a 127 exemplar, 16x16 for a 255 search crop) and a 1x1 conv + BN adjust that keeps the whole
    8x8 template (an even kernel whose centre is the exemplar's centre)."""
    backbone = PartSpec("mobilenetv2_imagenet", {"num_layers": 14})
    neck = PartSpec("adjust", {"in_channels": [MOBILENETV2_CHANNELS], "out_channels": [adjust_channels],
                               "center_size": 8})
    return backbone, neck


__all__ = ["MOBILENETV2_CHANNELS", "MOBILENETV2_STRIDE", "NetworkSpec", "PartSpec", "SiameseNet",
           "build_part", "list_parts", "mobilenetv2_parts", "register_part"]
