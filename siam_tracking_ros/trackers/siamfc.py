"""SiamFC (Bertinetto et al. 2016): AlexNet features, cross-correlation score map, multi-scale search.

Tracking follows siamfc-pytorch: the search crop is taken at ``scale_num`` scales
``scale_step ** [-n//2 .. n//2]`` in one batch, each response map is upsampled bicubically by
``response_up`` (17 -> 272), non-centre scales are multiplied by ``scale_penalty``, the best scale
wins, its map is normalised to sum 1 and blended with a Hann window (``window_influence``), and the
peak displacement moves the target; the size follows the chosen scale with rate ``scale_lr``.

**Score.** The network is trained with a logistic loss on the raw (scaled) correlation, so the
raw response is a logit of "this is the target centre". The reported score is
``sigmoid((peak - score_bias) / score_temperature)`` of the raw peak of the chosen scale, which
falls towards 0 when nothing resembles the template. ``score_bias`` / ``score_temperature``
calibrate it (defaults 0 / 1 = the trained logit as is; fit them on validation sequences so that
e.g. 0.5 separates present from absent targets).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from siam_tracking_ros.core.geometry import (
    box_in_frame,
    clip_box_xywh,
    context_size,
    cosine_window,
    frame_mean,
)
from siam_tracking_ros.core.result import TrackResult
from siam_tracking_ros.models.assembly import (
    MOBILENETV2_STRIDE,
    NetworkSpec,
    PartSpec,
    SiameseNet,
    mobilenetv2_parts,
)
from siam_tracking_ros.models.backbones.alexnet import alexnet_output_size
from siam_tracking_ros.trackers.base import SiameseTracker
from siam_tracking_ros.trackers.config_fields import BackboneStrideFields, FCSearchFields, SearchFields
from siam_tracking_ros.trackers.registry import register_tracker
from siam_tracking_ros.weights.io import add_missing_bn_counters


@dataclass
class SiamFCConfig(SearchFields, FCSearchFields, BackboneStrideFields):
    """Architecture and tracking hyper-parameters (defaults: siamfc-pytorch); the search fields
    are :class:`~.config_fields.SearchFields` and :class:`~.config_fields.FCSearchFields`."""

    STRIDE_FIELDS: ClassVar[tuple[str, ...]] = ("total_stride",)

    #: ``siamfc`` (AlexNetV1: grouped convs, no BN after conv5), ``pysot`` (plain, width_mult) or
    #: ``mobilenetv2`` (ImageNet MobileNetV2 ``features[:14]``, stride 16, + a 1x1 adjust neck)
    backbone: str = "siamfc"
    width_mult: float = 1.0
    #: the network was trained on RGB crops (siamfc-pytorch); frames arrive BGR
    #: (the MobileNetV2 backbone converts BGR itself and ignores this)
    input_rgb: bool = True
    out_scale: float = 0.001
    window_influence: float = 0.176
    #: channels of the adjust neck over the MobileNetV2 maps
    adjust_channels: int = 256



def siamfc_spec(config: SiamFCConfig, depth: int = 5, transform: PartSpec | None = None,
                transform_name: str = "transform") -> NetworkSpec:
    """The ``config.backbone`` (AlexNet layouts cut after stage ``depth``, or ImageNet MobileNetV2
    with an adjust neck) + the ``fc`` head, with an optional template transform (e.g. RASNet's
    attention, CFNet's correlation filter)."""
    head = PartSpec("fc", {"out_scale": config.out_scale})
    if config.backbone == "mobilenetv2":
        if depth != 5:
            raise ValueError("the mobilenetv2 backbone has no AlexNet stages to cut at")
        backbone, neck = mobilenetv2_parts(config.adjust_channels)
        return NetworkSpec(backbone, head, neck=neck, transform=transform, transform_name=transform_name)
    if config.backbone not in ("siamfc", "pysot"):
        raise ValueError(f"siamfc: unknown backbone '{config.backbone}' (siamfc|pysot|mobilenetv2)")
    backbone = PartSpec("alexnet", {"layout": config.backbone, "width_mult": config.width_mult,
                                    "depth": depth})
    return NetworkSpec(backbone, head, transform=transform, transform_name=transform_name,
                       input_rgb=config.input_rgb)


def exemplar_map_size(config: SiamFCConfig, depth: int = 5) -> int:
    """Side of the exemplar's feature map: AlexNet's output after stage ``depth`` (no padding), or
    ``ceil(exemplar / 16)`` on the padded MobileNetV2 (8 for 127)."""
    if config.backbone == "mobilenetv2":
        return -(-config.exemplar_size // MOBILENETV2_STRIDE)
    return alexnet_output_size(config.exemplar_size, depth)


class SiamFCNet(SiameseNet):
    """AlexNet + :class:`FCHead`; ``search`` returns ``{"score": (B, 1, 17, 17)}`` logits."""

    head_kind = "fc"

    def __init__(self, config: SiamFCConfig) -> None:
        super().__init__(siamfc_spec(config))


class SiamFCTracker(SiameseTracker):
    """Multi-scale SiamFC tracking (see module docstring)."""

    supports_cuda_graphs = True

    config: SiamFCConfig

    def __init__(self, model: SiamFCNet, config: SiamFCConfig, device: torch.device) -> None:
        super().__init__(model, config, device)
        n = config.scale_num
        self.scale_factors = config.scale_step ** np.linspace(-(n // 2), n // 2, n)
        penalties = np.full(n, config.scale_penalty, dtype=np.float32)
        penalties[n // 2] = 1.0
        self._penalties = torch.from_numpy(penalties).to(self.device)
        window = cosine_window(config.upscale_size)
        self._window = torch.from_numpy(window / window.sum()).to(self.device)
        self._kernel: torch.Tensor | None = None

    def _init(self, frame: np.ndarray, box: tuple[float, ...]) -> None:
        cfg = self.config
        x, y, w, h = box
        self.center = np.array([x + w / 2, y + h / 2])
        self.target_sz = np.array([w, h])
        self.z_sz = context_size(w, h, cfg.context_amount)
        self.x_sz = self.z_sz * cfg.instance_size / cfg.exemplar_size
        image = self.upload(frame)
        self.avg_color = frame_mean(image).clone()
        self._kernel = self.template_pass(self.template_crop(image))

    def template_crop(self, image: torch.Tensor) -> torch.Tensor:
        """The exemplar crop ``(1, 3, exemplar_size, exemplar_size)`` of the uploaded frame."""
        cfg = self.config
        z = self.crop(image, self.center, self.z_sz, cfg.exemplar_size, self.avg_color)
        return z.to(self.dtype)

    def search_crops(self, image: torch.Tensor) -> torch.Tensor:
        """One search crop per scale candidate, ``(scale_num, 3, instance_size, instance_size)``."""
        sizes = [self.x_sz * f for f in self.scale_factors]
        return self.crop(image, self.center, sizes, self.config.instance_size, self.avg_color)

    def responses(self, frame: np.ndarray) -> torch.Tensor:
        """Raw upsampled responses ``(candidates, U, U)`` (float32) for the current state."""
        cfg = self.config
        x = self.search_crops(self.upload(frame))
        score = self.search_pass(self._kernel, x.to(self.dtype))["score"].float()
        up = F.interpolate(score, size=(cfg.upscale_size, cfg.upscale_size), mode="bicubic",
                           align_corners=False)
        return up[:, 0]

    def locate(self, responses: torch.Tensor) -> tuple[int, int, int, float]:
        """Pick ``(scale_id, row, col, raw_peak)`` from raw upsampled responses (siamfc-pytorch)."""
        cfg = self.config
        peaks = responses.amax(dim=(1, 2))
        scale_id = int(torch.argmax(peaks * self._penalties))
        response = responses[scale_id]
        response = response - response.min()
        response = response / (response.sum() + 1e-16)
        response = (1 - cfg.window_influence) * response + cfg.window_influence * self._window
        row, col = divmod(int(torch.argmax(response)), response.shape[1])
        return scale_id, row, col, float(peaks[scale_id])

    def move(self, scale_id: int, row: int, col: int, frame_shape: Sequence[int]
             ) -> tuple[float, float, float, float]:
        """Apply a located peak to the state; returns the clipped ``(cx, cy, w, h)``."""
        factor = float(self.scale_factors[scale_id])
        self.center = self.center + self.peak_offset(row, col, factor)
        self.rescale(factor)
        return self.clip_state(frame_shape)

    def peak_offset(self, row: int, col: int, factor: float) -> np.ndarray:
        """Displacement ``(du, dv)`` in source pixels of a peak on the upsampled map of scale ``factor``."""
        cfg = self.config
        half = (cfg.upscale_size - 1) / 2.0
        to_image = cfg.total_stride / cfg.response_up * self.x_sz * factor / cfg.instance_size
        return np.array([col - half, row - half]) * to_image

    def rescale(self, factor: float) -> None:
        """Follow the chosen scale ``factor`` with rate ``scale_lr`` (target, exemplar and search sizes)."""
        cfg = self.config
        scale = (1 - cfg.scale_lr) + cfg.scale_lr * factor
        self.target_sz = self.target_sz * scale
        self.z_sz *= scale
        self.x_sz *= scale

    def clip_state(self, frame_shape: Sequence[int]) -> tuple[float, float, float, float]:
        """Clip the state to the frame; returns ``(cx, cy, w, h)``."""
        cx, cy, w, h = clip_box_xywh(*self.center, *self.target_sz, frame_shape, self.config.min_size)
        self.center, self.target_sz = np.array([cx, cy]), np.array([w, h])
        return cx, cy, w, h

    def presence_score(self, raw_peak: float) -> float:
        """Calibrated sigmoid of the raw peak (see module docstring)."""
        cfg = self.config
        logit = (raw_peak - cfg.score_bias) / cfg.score_temperature
        if math.isnan(logit):
            return 0.0
        return 0.5 * (1.0 + math.tanh(0.5 * logit))  # = sigmoid, without overflow

    def _track(self, frame: np.ndarray) -> TrackResult:
        scale_id, row, col, peak = self.locate(self.responses(frame))
        cx, cy, w, h = self.move(scale_id, row, col, frame.shape)
        return TrackResult(box_in_frame(cx, cy, w, h, frame.shape), self.presence_score(peak),
                           extra={"raw_score": peak, "scale": float(self.scale_factors[scale_id])})


def import_official_siamfc(state: Mapping[str, torch.Tensor], config: SiamFCConfig | None
                           ) -> dict[str, torch.Tensor]:
    """Map a siamfc-pytorch checkpoint (``backbone.conv1.0.weight`` ...) to :class:`SiamFCNet`.

    siamfc-pytorch's head has no parameters (fixed ``out_scale``); it becomes ``head.adjust`` with
    weight ``out_scale`` (0.001, or ``config.out_scale``) and bias 0.
    """
    if any(k.startswith("featureExtract.") for k in state):
        raise KeyError("this is a DaSiamRPN checkpoint (featureExtract.*): load it with 'dasiamrpn', "
                       "not 'siamfc'")
    if any(k.startswith("rpn_head.") for k in state):
        raise KeyError("this is a pysot SiamRPN checkpoint (rpn_head.*): load it with 'siamrpn' "
                       "(or 'siamrpnpp'/'siammask' for ResNet ones), not 'siamfc'")
    if "backbone.conv1.0.weight" not in state:
        raise KeyError("not a siamfc-pytorch checkpoint: no 'backbone.conv1.0.weight'")
    out = {k: v for k, v in state.items() if k.startswith("backbone.conv")}
    unknown = sorted(set(state) - set(out) - {"head.adjust.weight", "head.adjust.bias"})
    if unknown:
        raise KeyError(f"unexpected keys for a siamfc checkpoint: {unknown[:5]}")
    out_scale = config.out_scale if config is not None else SiamFCConfig.out_scale
    out["head.adjust.weight"] = state.get("head.adjust.weight", torch.full((1, 1, 1, 1), out_scale))
    out["head.adjust.bias"] = state.get("head.adjust.bias", torch.zeros(1))
    return add_missing_bn_counters(out)


@register_tracker("siamfc", SiamFCConfig, description="SiamFC: AlexNet + xcorr, multi-scale search",
                  importer=import_official_siamfc)
def build_siamfc(config: SiamFCConfig, device: torch.device) -> SiamFCTracker:
    """Build a :class:`SiamFCTracker` with an untrained :class:`SiamFCNet`."""
    return SiamFCTracker(SiamFCNet(config), config, device)
