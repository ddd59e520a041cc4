"""NanoTrack v1/v2/v3: MobileNetV3-small backbone + anchor-free BAN head, pysot-style tracking.

The network takes float BGR crops in 0..255 (NanoTrack uses no normalisation). Tracking follows
the official NanoTracker: context crop, softmax foreground score, (l, t, r, b) distances decoded
around a grid of points, then the decision pieces of :mod:`~.decision` (scale/ratio penalty,
cosine window, size smoothing with ``lr = penalty * score * LR``, clipping). The network is an
assembly spec (:func:`nanotrack_spec`: ``mobilenetv3`` or ``mobilenetv2_imagenet`` backbone +
``ban_v1|v2|v3`` head); the official hyper-parameters of each version (and OpenCV's) are presets
selected by ``version`` / ``opencv_compat`` (``nanotrack/v1`` ... ``nanotrack/opencv``). Official
checkpoints load through :func:`import_official_nanotrack` (keys ``backbone.*`` and ``ban_head.*``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import cv2
import numpy as np
import torch

from siam_tracking_ros.backends.crop import WarpCropper
from siam_tracking_ros.core.capabilities import ScalableSearch
from siam_tracking_ros.core.geometry import (
    change_ratio,
    context_size,
    cosine_window,
    crop_subwindow_numpy,
    frame_mean,
    padded_size,
)
from siam_tracking_ros.core.presence import platt_probability
from siam_tracking_ros.core.result import TrackResult
from siam_tracking_ros.models.assembly import NetworkSpec, PartSpec, SiameseNet
from siam_tracking_ros.models.heads.ban import TemplateFeatures
from siam_tracking_ros.trackers.base import SiameseTracker
from siam_tracking_ros.trackers.config_fields import PresetTable
from siam_tracking_ros.trackers.decision import Proposals, blend_window, rank_proposals, step_state
from siam_tracking_ros.trackers.registry import refuse_other_keys, register_tracker


class VersionSpec(NamedTuple):
    """Architecture of one NanoTrack version: MobileNetV3 block list, head part, score-map side."""

    blocks: str
    head: str
    score_size: int


#: the search crop side at which a version's ``score_size`` holds (NanoTrack's own: 255 px)
NOMINAL_INSTANCE_SIZE = 255

VERSIONS: dict[str, VersionSpec] = {
    "v1": VersionSpec("small_stride16", "ban_v1", 16),
    "v2": VersionSpec("small_stride16", "ban_v2", 16),
    "v3": VersionSpec("small_stride16_wide", "ban_v3", 15),
}

#: the ``backbone`` options: the official MobileNetV3-style one of each version, or ImageNet
#: MobileNetV2 (torchvision layout, ``features[:14]``, stride 16, 96 channels) for pretrained init
BACKBONES = ("mobilenetv3", "mobilenetv2")

#: a ``ban_head`` key that only the given version's checkpoint has
_VERSION_MARKERS = {
    "v1": "ban_head.corr_pw.CA_layer.fc1.weight",
    "v2": "ban_head.cls_pw_tower.0.weight",
    "v3": "ban_head.corr_dw_cls.conv_kernel.0.weight",
}


@dataclass
class NanoTrackConfig(PresetTable):
    """NanoTrack architecture version and tracking hyper-parameters.

    ``window_influence``, ``penalty_k`` and ``lr`` left at ``None`` take the values of the preset
    that ``version`` names (the official ``configv{1,2,3}.yaml``), or of ``opencv`` (OpenCV's
    hard-coded ones) with ``opencv_compat`` (:meth:`preset_value`; they stay ``None`` in the
    config): ``nanotrack/v3`` = ``version="v3"``, ``nanotrack/opencv`` = ``opencv_compat=True``.
    """

    PRESETS: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "v1": {"window_influence": 0.462, "penalty_k": 0.148, "lr": 0.390},
        "v2": {"window_influence": 0.490, "penalty_k": 0.150, "lr": 0.385},
        "v3": {"window_influence": 0.455, "penalty_k": 0.138, "lr": 0.348},
        "opencv": {"window_influence": 0.455, "penalty_k": 0.055, "lr": 0.37},
    }

    version: str = "v2"
    #: ``mobilenetv3`` (the official checkpoints) or ``mobilenetv2`` (ImageNet-pretrained init)
    backbone: str = "mobilenetv3"
    exemplar_size: int = 127
    instance_size: int = 255
    stride: int = 16
    context_amount: float = 0.5
    window_influence: float | None = None
    penalty_k: float | None = None
    lr: float | None = None
    min_size: float = 10.0
    #: reproduce OpenCV's ``cv2.TrackerNano`` (see :class:`NanoTracker`) instead of the official loop
    opencv_compat: bool = False
    #: Platt parameters ``(a, b)``: published score = sigmoid(a * logit(raw peak) + b), the
    #: probability that the box holds the target (fitted by ``siam-train calibrate``); None = raw
    score_calibration: tuple[float, float] | None = None
    #: below this calibrated score the state (centre, size) is held at the last confident one
    hold_below: float = 0.0
    #: while the search is widened (LOST), the state follows a best box scoring at least this;
    #: weaker ones are reported but not followed (1.0 = never; 0.3 picked on the validation split)
    lost_follow_above: float = 0.3

    def default_preset(self) -> str:
        """``opencv`` with ``opencv_compat``, else ``version``."""
        return "opencv" if self.opencv_compat else self.version

    @classmethod
    def selecting(cls, preset: str) -> dict[str, Any]:
        return {"opencv_compat": True} if preset == "opencv" else {"version": preset}

    def __post_init__(self) -> None:
        version_spec(self.version)  # an unknown version is named as such, not as a preset
        super().__post_init__()


def version_spec(version: str) -> VersionSpec:
    """The :class:`VersionSpec` of ``version``; ``ValueError`` naming the known ones otherwise."""
    if version not in VERSIONS:
        raise ValueError(f"unknown NanoTrack version '{version}'; known: {', '.join(VERSIONS)}")
    return VERSIONS[version]


def nanotrack_spec(version: str = "v2", backbone: str = "mobilenetv3") -> NetworkSpec:
    """Backbone (attribute ``backbone``) + the version's BAN head (attribute ``ban_head``);
    ``search`` returns ``{"cls": (B, 2, S, S) logits, "loc": (B, 4, S, S) ltrb crop pixels}``."""
    arch = version_spec(version)
    if backbone not in BACKBONES:
        raise ValueError(f"unknown NanoTrack backbone '{backbone}'; known: {', '.join(BACKBONES)}")
    part = PartSpec("mobilenetv3", {"blocks": arch.blocks}) if backbone == "mobilenetv3" else \
        PartSpec("mobilenetv2_imagenet", {"width": 1.0, "num_layers": 14})
    return NetworkSpec(part, PartSpec(arch.head), head_kind="ban", outputs=("cls", "loc"),
                       head_name="ban_head")


class NanoTrackNet(SiameseNet):
    """The network of :func:`nanotrack_spec`; ``template`` -> head-ready template features."""

    head_kind = "ban"

    def __init__(self, version: str = "v2", backbone: str = "mobilenetv3") -> None:
        super().__init__(nanotrack_spec(version, backbone))
        self.version = version
        self.backbone_name = backbone


def detect_version(state: Mapping[str, torch.Tensor]) -> str:
    """Which NanoTrack version an official state dict belongs to (``ValueError`` if none)."""
    found = [v for v, key in _VERSION_MARKERS.items() if key in state]
    if len(found) != 1:
        heads = sorted({k.split(".")[0] for k in state})
        raise ValueError(f"not a NanoTrack v1/v2/v3 checkpoint (top-level keys: {heads})")
    return found[0]


def detect_nanotrack_options(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Architecture options an official checkpoint needs: ``{"version": "v1"|"v2"|"v3"}``."""
    return {"version": detect_version(state), "backbone": "mobilenetv3"}


def import_official_nanotrack(state: Mapping[str, torch.Tensor], config: Any = None
                              ) -> dict[str, torch.Tensor]:
    """Map an official NanoTrack state dict (``backbone.*``, ``ban_head.*``) to ours.

    Names are kept; the ``neck.*`` tensors are dropped (the official model builder never calls
    its neck). Raises ``KeyError`` for keys of another network and ``ValueError`` when
    ``config.version`` differs from the checkpoint's version.
    """
    refuse_other_keys(state, ("backbone.", "ban_head.", "neck."), "keys that no NanoTrack checkpoint has")
    version = detect_version(state)
    wanted = getattr(config, "version", None)
    if wanted is not None and wanted != version:
        raise ValueError(f"checkpoint is NanoTrack {version} but version='{wanted}' was asked for; "
                         f"pass version='{version}'")
    return {k: v for k, v in state.items() if not k.startswith("neck.")}


class NanoTracker(SiameseTracker, ScalableSearch):
    """NanoTrack tracking loop (see the module docstring).

    The state centre is continuous (``x + w / 2``). With ``opencv_compat`` the loop reproduces
    OpenCV's ``TrackerNano`` instead: its crop (see :meth:`_crop`; border = mean of the current
    frame), RGB network input, integer crop sides, search side ``2 * s_z`` (integer
    ``255 // 127``), context from ``int(w + h)``, the scale penalty measured against the target
    *centre* (as OpenCV does), a square-rooted Hann window, its hard-coded hyper-parameters,
    float32 state arithmetic and integer output boxes.
    """

    supports_cuda_graphs = True

    def __init__(self, model: NanoTrackNet, config: NanoTrackConfig, device: torch.device) -> None:
        super().__init__(model, config, device)
        #: the config's values, or its preset's (the version's official ones, OpenCV's)
        self.window_influence = float(config.preset_value("window_influence"))
        self.penalty_k = float(config.preset_value("penalty_k"))
        self.lr = float(config.preset_value("lr"))
        self.score_size = version_spec(config.version).score_size
        # OpenCV keeps its state and maps in float32 and its points in crop pixels (origin 127)
        self.state_dtype = np.float32 if config.opencv_compat else np.float64
        self._grids: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}
        #: search crop side in network pixels (wider while :meth:`set_search_scale` > 1)
        self.instance_size = config.instance_size
        self.points, self.window, self.origin = self._grid(self.instance_size)
        self.center = np.zeros(2, self.state_dtype)
        self.size = np.zeros(2, self.state_dtype)
        self.pad_value: torch.Tensor | None = None
        self._crop_buffers: dict[int, torch.Tensor] = {}
        self._warp = WarpCropper()  # host crops straight into the ONNX input (onnxruntime backend)
        self._prob = np.empty(self.score_size ** 2, np.float32)  # kept by _read_outputs
        self.features: TemplateFeatures | None = None
        self.search_scale = 1.0
        #: the best box of the last widened (LOST) frame, taken as the state when the search narrows
        self._candidate: tuple[np.ndarray, np.ndarray] | None = None

    def _grid(self, instance_size: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Points ``(2, S*S)``, cosine window ``(S*S,)`` and origin of a search crop of
        ``instance_size`` pixels (the head is fully convolutional: S grows by one per stride)."""
        cached = self._grids.get(instance_size)
        if cached is None:
            cfg = self.config
            score_size = self.score_size + (instance_size - NOMINAL_INSTANCE_SIZE) // cfg.stride
            origin = instance_size // 2 if cfg.opencv_compat else 0  # OpenCV: points in crop pixels
            window = cosine_window(score_size).astype(self.state_dtype)
            # cv2.createHanningWindow returns the square root of the outer product
            window = (np.sqrt(window) if cfg.opencv_compat else window).ravel()
            # cell i sees crop pixel ~stride * i; the version's grid at 255 px is the official one,
            # other sizes keep it centred (half the growth on each side), odd growths included
            offsets = ((np.arange(score_size) - self.score_size // 2) * cfg.stride
                       - (instance_size - NOMINAL_INSTANCE_SIZE) / 2 + origin)
            grid_x, grid_y = np.meshgrid(offsets, offsets)
            points = np.stack([grid_x.ravel(), grid_y.ravel()]).astype(self.state_dtype)
            cached = self._grids[instance_size] = (points, window, origin)
        return cached

    def _crop(self, frame: np.ndarray, side: float, out_size: int) -> torch.Tensor:
        """Square crop of ``side`` source pixels around the state centre, resized to ``out_size``.

        Official mode: on the device (``crop_subwindow``) with the init frame's mean as border and
        pysot's corner for the pixel-index centre ``c - 0.5``, i.e. ``crop_window(c - 1)``.
        OpenCV mode: OpenCV's own arithmetic on the CPU (corner ``int(c) - (side+1)//2`` equals
        ``crop_window(floor(c) - 0.5)`` for an integer side; uint8 border and resize), channels
        swapped to RGB, crop uploaded.
        """
        if self.config.opencv_compat:
            patch = crop_subwindow_numpy(frame, np.floor(self.center) - 0.5, side, out_size,
                                         cv2.mean(frame)[:3])
            rgb = torch.from_numpy(np.ascontiguousarray(patch[:, :, ::-1].transpose(2, 0, 1)))
            return self._upload_crop(rgb, out_size)
        if self.backend == "onnxruntime":  # same crop by cv2.warpAffine into the kept ONNX input
            if self.pad_value is None:
                self.pad_value = torch.tensor(cv2.mean(frame)[:3], dtype=torch.float64)
            return self._warp(frame, self.center - 1.0, side, out_size, self.pad_value.tolist())
        image = self.upload(frame)
        if self.pad_value is None:
            self.pad_value = frame_mean(image)
        patch = self.crop(image, self.center - 1.0, side, out_size, self.pad_value)
        return patch.to(self.dtype)

    def _upload_crop(self, chw: torch.Tensor, out_size: int) -> torch.Tensor:
        """Copy a CPU ``(3, S, S)`` crop into a reused device buffer of the network dtype."""
        buffer = self._crop_buffers.get(out_size)
        if buffer is None or buffer.dtype != self.dtype:
            buffer = torch.empty((1, 3, out_size, out_size), dtype=self.dtype, device=self.device)
            self._crop_buffers[out_size] = buffer
        buffer[0].copy_(chw)
        return buffer

    def _search_geometry(self) -> tuple[float, np.floating | float]:
        """``(side of the search crop in source pixels, scale_z = exemplar / s_z)``."""
        cfg = self.config
        w, h = self.size
        if cfg.opencv_compat:
            total = float(int(w + h))
            s_z = np.sqrt((w + cfg.context_amount * total) * (h + cfg.context_amount * total))
            side = float(int(s_z * (self.instance_size // cfg.exemplar_size)))
        else:
            s_z = context_size(w, h, cfg.context_amount)
            side = s_z * self.instance_size / cfg.exemplar_size
        return side, cfg.exemplar_size / s_z

    def set_search_scale(self, scale: float) -> None:
        """Search ``scale`` times the usual region (e.g. while the target is LOST); 1 = normal.

        The crop grows in network pixels too (by whole strides), so the target keeps the scale
        the network was trained at and its score stays meaningful; the cosine window is off while
        widened. The wider pass costs about ``scale**2`` times the normal one.

        While widened the search stays centred on the last state from before (the last confident
        box): each frame's best box is reported but not followed, so a lost tracker does not wander
        after look-alikes. Back to 1, the last reported box becomes the state (the target that was
        found again).
        """
        if not np.isfinite(scale) or scale < 1.0:
            raise ValueError(f"search scale must be >= 1, got {scale}")
        if scale == 1.0 and self.search_scale > 1.0 and self._candidate is not None:
            self.center, self.size = self._candidate
        self._candidate = None
        cfg = self.config
        extra = round((scale - 1.0) * cfg.instance_size / cfg.stride)
        self.search_scale = float(scale)
        self.instance_size = cfg.instance_size + extra * cfg.stride
        self.points, self.window, self.origin = self._grid(self.instance_size)

    def presence(self, raw_score: float) -> float:
        """Calibrated probability that the box holds the target (the raw peak if uncalibrated)."""
        return platt_probability(raw_score, self.config.score_calibration)

    def _rank(self, score: np.ndarray, boxes: np.ndarray, scale_z: float, influence: float) -> Proposals:
        """Penalty and cosine window of every proposal (``boxes`` ``(N, 4)`` crop pixels);
        OpenCV's penalty measures the scale change against the target centre."""
        cfg = self.config
        if not cfg.opencv_compat:
            return rank_proposals(score, boxes, self.size * scale_z, self.window, self.penalty_k, influence)
        target_w, target_h = self.size * scale_z
        w, h = boxes[:, 2], boxes[:, 3]
        s_c = change_ratio(padded_size(w, h) / padded_size(*self.center))
        r_c = change_ratio((target_w / target_h) / (w / h))
        return blend_window(score, boxes, np.exp(-(r_c * s_c - 1.0) * self.penalty_k), self.window, influence)

    def _init(self, frame: np.ndarray, box: tuple[float, ...]) -> None:
        x, y, w, h = box
        self.center = np.array([x + w / 2.0, y + h / 2.0], self.state_dtype)
        self.size = np.array([w, h], self.state_dtype)
        self.pad_value = None
        self._candidate = None
        side = context_size(w, h, self.config.context_amount)
        if self.config.opencv_compat:
            side = float(int(side))
        self.features = self.template_pass(self._crop(frame, side, self.config.exemplar_size))

    def _track(self, frame: np.ndarray) -> TrackResult:
        cfg = self.config
        side, scale_z = self._search_geometry()
        assert self.features is not None
        out = self.search_pass(self.features, self._crop(frame, side, self.instance_size))
        score, ltrb = self._read_outputs(out)
        boxes = self._decode(ltrb)  # (4, N) cx, cy, w, h in crop pixels, crop centre at self.origin
        boxes[:2] -= self.origin
        influence = self.window_influence if self.search_scale == 1.0 else 0.0  # no window while widened
        props = self._rank(score, boxes.T, scale_z, influence)
        best = int(np.argmax(props.pscore))
        presence = self.presence(float(score[best]))
        size = self.size * scale_z / scale_z if cfg.opencv_compat else self.size  # OpenCV's round trip
        cx, cy, w, h = step_state(self.center, size, props, best, scale_z, self.lr, frame.shape, cfg.min_size)
        held = presence < cfg.hold_below
        self._candidate = None
        if self.search_scale > 1.0 and presence < cfg.lost_follow_above:
            # lost: report the best box, keep searching around the last state
            self._candidate = (np.array([cx, cy], self.state_dtype), np.array([w, h], self.state_dtype))
        elif not held:
            self.center = np.array([cx, cy], self.state_dtype)
            self.size = np.array([w, h], self.state_dtype)
            cx, cy, w, h = (*self.center, *self.size)
        box = (cx - w / 2, cy - h / 2, w, h)
        if cfg.opencv_compat:
            box = tuple(float(int(v)) for v in box)
        box = tuple(float(v) for v in box)
        return TrackResult(box, presence, extra={"raw_score": float(score[best]), "held": held,
                                                 "pscore": float(props.pscore[best]),
                                                 "scale_z": float(scale_z)})

    def _read_outputs(self, out: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        """Foreground probability ``(N,)`` and ltrb distances ``(4, N)`` as float32 numpy.

        CPU float32 outputs are read in place, the probability computed into a kept array
        (``sigmoid(fg - bg)`` = the 2-way softmax); other devices go through torch.
        """
        cls, loc = out["cls"], out["loc"]
        if cls.device.type == "cpu" and cls.dtype == torch.float32 == loc.dtype:
            logits = cls.numpy()[0].reshape(2, -1)
            if self._prob.shape[0] != logits.shape[1]:
                self._prob = np.empty(logits.shape[1], np.float32)
            prob = self._prob
            np.subtract(logits[0], logits[1], out=prob)
            np.clip(prob, -80.0, 80.0, out=prob)
            np.exp(prob, out=prob)
            prob += 1.0
            np.reciprocal(prob, out=prob)
            return prob, loc.numpy()[0].reshape(4, -1)
        prob = torch.softmax(out["cls"][0].float(), dim=0)[1].flatten()
        packed = torch.cat([prob[None], out["loc"][0].float().flatten(1)]).cpu().numpy()
        return packed[0], packed[1:]

    def _decode(self, ltrb: np.ndarray) -> np.ndarray:
        """Corner distances around the points -> ``(cx, cy, w, h)`` rows, crop pixels."""
        x1 = self.points[0] - ltrb[0]
        y1 = self.points[1] - ltrb[1]
        x2 = self.points[0] + ltrb[2]
        y2 = self.points[1] + ltrb[3]
        return np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])


@register_tracker("nanotrack", NanoTrackConfig,
                  description="NanoTrack v1/v2/v3 (MobileNetV3-small + BAN head); loads official .pth",
                  importer=import_official_nanotrack, detect_options=detect_nanotrack_options)
def build_nanotrack(config: NanoTrackConfig, device: torch.device) -> NanoTracker:
    """Build the tracker for ``config.version`` (weights are loaded by the registry)."""
    return NanoTracker(NanoTrackNet(config.version, config.backbone), config, device)
