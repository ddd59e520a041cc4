"""DaSiamRPN (Zhu et al. 2018): SiamRPN (BIG AlexNet) with distractor-aware re-ranking and
local-to-global search.

**Distractor-aware re-ranking.** Each frame the top ``num_candidates`` proposals (by penalised,
windowed score) go through NMS (``nms_threshold``), leaving the candidate set ``P``. The target is

    q = argmax_{p in P}  s(z, p) - a_hat * sum_i a_i s(d_i, p) / sum_i a_i

where ``s(z, p)`` is the tracker's own proposal score (the RPN's template similarity after the
scale/ratio penalty and cosine window), ``d_i`` are the distractors remembered from earlier frames
with weights ``a_i`` (their foreground probability, decayed by ``1 - distractor_lr`` per frame),
``a_hat = distractor_weight``, and ``s(d_i, p)`` is the cosine similarity of backbone feature
windows: the template-sized window of the search features under ``p``'s score-map cell against
the window under ``d_i``'s cell in its frame. The correlation is linear, so the sum over
distractors is one correlation of the search features with the weighted sum of the normalised
distractor windows (the paper's trick), computed for all cells at once. After the choice, the
other candidates of ``P`` whose foreground probability exceeds ``distractor_threshold`` are added
to the memory (at most ``max_distractors`` per frame).

**Local-to-global search** (``long_term`` or :meth:`DaSiamRPNTracker.enable_global_search`): when
the score falls below ``lost_threshold`` the target is considered lost, its state is frozen, the
cosine window is dropped and the search region grows by ``search_step`` pixels per frame up to
``max_instance_size``; once a proposal scores at least ``found_threshold`` the tracker jumps to it
and returns to the normal region.

Presets of the official models (``width_mult``, ``hidden``, ``lr``, ``window_influence``,
``penalty_k``, ``adaptive``): ``preset="big"`` (``SiamRPNBIG``, the default), ``"vot"``
(``SiamRPNVOT``), ``"otb"`` (``SiamRPNOTB``), see :attr:`DaSiamRPNConfig.PRESETS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from siam_tracking_ros.core.anchors import nms_cxcywh
from siam_tracking_ros.core.capabilities import GlobalSearch
from siam_tracking_ros.core.result import TrackResult
from siam_tracking_ros.models.backbones.alexnet import sequential_to_stages
from siam_tracking_ros.trackers.config_fields import PresetFields
from siam_tracking_ros.trackers.decision import Proposals, still_lost
from siam_tracking_ros.trackers.registry import register_tracker
from siam_tracking_ros.trackers.siamrpn import (
    SiamRPNConfig,
    SiamRPNNet,
    SiamRPNTracker,
    _refuse_other_layouts,
)
from siam_tracking_ros.weights.io import add_missing_bn_counters


@dataclass
class DaSiamRPNConfig(PresetFields, SiamRPNConfig):
    """SiamRPN options plus distractor-aware and long-term settings.

    Fields left at ``None`` take the values of ``preset`` (default ``big``: SiamRPNBIG).
    """

    #: architecture and hyper-parameters of the official DaSiamRPN models (their ``cfg`` dicts)
    PRESETS: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "big": {"width_mult": 2.0, "hidden": 512, "lr": 0.295, "window_influence": 0.42,
                "penalty_k": 0.055, "instance_size": 271, "adaptive": True},
        "vot": {"width_mult": 1.0, "hidden": 256, "lr": 0.45, "window_influence": 0.44,
                "penalty_k": 0.04, "instance_size": 271, "adaptive": False},
        "otb": {"width_mult": 1.0, "hidden": 256, "lr": 0.30, "window_influence": 0.40,
                "penalty_k": 0.22, "instance_size": 271, "adaptive": False},
        #: ours: ImageNet MobileNetV2 + 64-channel adjust (the packaged weights, siam-train features)
        "mobilenetv2": {"width_mult": 1.0, "hidden": 64, "lr": 0.30, "window_influence": 0.40,
                        "penalty_k": 0.16, "instance_size": 255, "adaptive": False},
    }

    width_mult: float | None = None  # type: ignore[assignment]
    hidden: int | None = None  # type: ignore[assignment]
    instance_size: int | None = None  # type: ignore[assignment]
    penalty_k: float | None = None  # type: ignore[assignment]
    window_influence: float | None = None  # type: ignore[assignment]
    lr: float | None = None  # type: ignore[assignment]
    #: DaSiamRPN's ``adaptive``: search ``small_target_instance_size`` for targets smaller than
    #: ``small_target_ratio`` of the image area
    adaptive: bool | None = None
    small_target_ratio: float = 0.004
    small_target_instance_size: int = 287
    distractor_aware: bool = True
    num_candidates: int = 32
    nms_threshold: float = 0.5
    distractor_threshold: float = 0.5
    max_distractors: int = 5
    distractor_weight: float = 0.5
    distractor_lr: float = 0.3
    long_term: bool = False
    lost_threshold: float = 0.3
    found_threshold: float = 0.7
    search_step: int = 64
    max_instance_size: int = 767

    def default_preset(self) -> str:
        """``mobilenetv2`` on that backbone, else ``big`` (SiamRPNBIG)."""
        return "mobilenetv2" if self.backbone == "mobilenetv2" else "big"


class DistractorMemory:
    """Weighted sum of normalised distractor feature windows, decayed each frame.

    ``kernel = sum_t (1-lr)^(T-t) lr sum_i a_i d_i/|d_i|`` and ``weight`` the same sum of ``a_i``;
    ``similarity(x_f)`` gives ``<kernel, window(p)> / (|window(p)| weight)`` for every cell ``p``.
    """

    def __init__(self, shape: tuple[int, ...], device: torch.device, learning_rate: float) -> None:
        self.kernel = torch.zeros(shape, device=device)
        self.weight = 0.0
        self.learning_rate = learning_rate

    def reset(self) -> None:
        """Forget every distractor."""
        with torch.inference_mode():  # the kernel is an inference tensor (made in ``init``)
            self.kernel.zero_()
        self.weight = 0.0

    @property
    def empty(self) -> bool:
        return self.weight <= 0.0

    def add(self, windows: torch.Tensor, weights: torch.Tensor) -> None:
        """Decay the memory and add ``windows (N, C, h, w)`` with weights ``(N,)``."""
        rate = self.learning_rate
        norms = windows.flatten(1).norm(dim=1).clamp(min=1e-12)
        combined = (windows * (weights / norms).view(-1, 1, 1, 1)).sum(dim=0, keepdim=True)
        self.kernel.mul_(1 - rate).add_(rate * combined.to(self.kernel.dtype))
        self.weight = (1 - rate) * self.weight + rate * float(weights.sum())

    def similarity(self, x_f: torch.Tensor, window_norms: torch.Tensor) -> torch.Tensor:
        """Weighted mean cosine similarity of every template-sized window of ``x_f (1, C, H, W)``."""
        corr = F.conv2d(x_f.float(), self.kernel)[0, 0]
        return corr / (window_norms * max(self.weight, 1e-12))


def window_norms(x_f: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """L2 norm of every ``height x width`` window of ``x_f (1, C, H, W)`` -> ``(H-h+1, W-w+1)``."""
    energy = x_f.float().pow(2).sum(dim=1, keepdim=True)
    ones = torch.ones((1, 1, height, width), dtype=energy.dtype, device=energy.device)
    return F.conv2d(energy, ones)[0, 0].clamp(min=0).sqrt().clamp(min=1e-12)


def feature_windows(x_f: torch.Tensor, cells: torch.Tensor, score_size: int, height: int,
                    width: int) -> torch.Tensor:
    """Template-sized windows of ``x_f (1, C, H, W)`` under score-map cells -> ``(N, C, h, w)``."""
    rows, cols = (cells // score_size).tolist(), (cells % score_size).tolist()
    return torch.stack([x_f[0, :, r:r + height, c:c + width] for r, c in zip(rows, cols, strict=True)])


def rerank(pscore: np.ndarray, candidates: np.ndarray, distractor_similarity: np.ndarray,
           cells: np.ndarray, distractor_weight: float) -> int:
    """Index (into the proposals) of the candidate maximising ``pscore - a_hat * sim_D(cell)``."""
    objective = pscore[candidates] - distractor_weight * distractor_similarity[cells[candidates]]
    return int(candidates[int(np.argmax(objective))])


class DaSiamRPNTracker(SiamRPNTracker, GlobalSearch):
    """SiamRPN tracking with distractor-aware re-ranking and local-to-global search."""

    config: DaSiamRPNConfig

    def __init__(self, model: SiamRPNNet, config: DaSiamRPNConfig, device: torch.device) -> None:
        super().__init__(model, config, device)
        self.memory: DistractorMemory | None = None
        self._candidates = np.empty(0, dtype=np.int64)
        for size in self.search_sizes():
            self.geometry(size)

    def search_sizes(self) -> list[int]:
        """Every search size this tracker may use (geometry is precomputed for each)."""
        cfg = self.config
        base = {cfg.instance_size, cfg.small_target_instance_size} if cfg.adaptive else {cfg.instance_size}
        sizes = set(base)
        for start in base:
            size = start + cfg.search_step
            while size <= cfg.max_instance_size:
                sizes.add(size)
                size += cfg.search_step
        return sorted(sizes)

    def enable_global_search(self, flag: bool) -> None:
        """Switch local-to-global search on or off at run time (e.g. while the node reports LOST).

        ``True`` also starts the growing search right away when a target is being tracked; it
        returns to the normal region once a proposal scores ``found_threshold``. ``False`` goes back
        to the normal search region at once.
        """
        self.long_term = bool(flag)
        if flag and self.initialized and not self._lost:
            self._lost = True
            self._grow_search()
        elif not flag and self._lost:
            self._lost = False
            self.instance_size = self._base_instance_size

    @property
    def global_search_configured(self) -> bool:
        """``long_term`` of the config: local-to-global search runs all the time."""
        return bool(self.config.long_term)

    @property
    def lost(self) -> bool:
        """True while the tracker is in the global (growing) search."""
        return self._lost

    def _initial_instance_size(self, frame_shape: tuple[int, ...]) -> int:
        cfg = self.config
        size = cfg.instance_size
        area_ratio = self.size.prod() / float(frame_shape[0] * frame_shape[1])
        if cfg.adaptive and area_ratio < cfg.small_target_ratio:
            size = cfg.small_target_instance_size
        self._base_instance_size = size
        return size

    @property
    def wants_search_features(self) -> bool:  # type: ignore[override]
        return self.config.distractor_aware

    def search_size(self) -> int:
        return self.instance_size  # the growing global search sets it

    def window_influence(self) -> float:
        return 0.0 if self._lost else self.config.window_influence  # no window while lost

    def _init(self, frame: np.ndarray, box: tuple[float, ...]) -> None:
        super()._init(frame, box)
        z_f = self.features[0]
        self._template_hw = (int(z_f.shape[-2]), int(z_f.shape[-1]))
        self.memory = DistractorMemory(tuple(z_f.shape), self.device, self.config.distractor_lr)

    def reset(self) -> None:
        super().reset()
        if self.memory is not None:
            self.memory.reset()

    def candidates(self, props: Proposals) -> np.ndarray:
        """NMS survivors among the ``num_candidates`` best proposals, best first."""
        cfg = self.config
        count = min(cfg.num_candidates, props.pscore.size)
        top = np.argpartition(-props.pscore, count - 1)[:count]
        boxes = torch.from_numpy(props.boxes[top])
        kept = nms_cxcywh(boxes, torch.from_numpy(props.pscore[top]), cfg.nms_threshold)
        return top[kept.numpy()]

    def select(self, props: Proposals, x_f: torch.Tensor) -> tuple[int, np.ndarray]:
        """Distractor-aware choice; returns ``(best proposal, candidate indices)``."""
        cfg = self.config
        candidates = self.candidates(props)
        assert self.memory is not None
        if not cfg.distractor_aware or self.memory.empty:
            return int(candidates[0]), candidates
        norms = window_norms(x_f, *self._template_hw)
        similarity = self.memory.similarity(x_f, norms).flatten().cpu().numpy()
        if similarity.size * cfg.anchor_num != props.pscore.size:
            raise ValueError("distractor-aware search needs template-sized feature windows to align "
                             "with score-map cells (base_size=0)")
        cells = np.arange(props.pscore.size) % similarity.size
        return rerank(props.pscore, candidates, similarity, cells, cfg.distractor_weight), candidates

    def remember_distractors(self, props: Proposals, candidates: np.ndarray, best: int,
                             x_f: torch.Tensor) -> None:
        """Add the strong non-chosen candidates of this frame to the distractor memory."""
        cfg = self.config
        chosen = [c for c in candidates if c != best and props.score[c] > cfg.distractor_threshold]
        chosen = chosen[:cfg.max_distractors]
        if not chosen or self.memory is None:
            return
        score_size = self.geometry(self.instance_size).score_size
        cells = torch.as_tensor(np.asarray(chosen) % (score_size * score_size))
        windows = feature_windows(x_f.float(), cells, score_size, *self._template_hw)
        weights = torch.as_tensor(props.score[chosen], dtype=torch.float32, device=windows.device)
        self.memory.add(windows, weights)

    def choose(self, props: Proposals, out: Mapping[str, torch.Tensor]) -> int:
        """Distractor-aware choice among the NMS candidates (remembered for :meth:`after_update`)."""
        if not self.config.distractor_aware:
            self._candidates = np.empty(0, dtype=np.int64)
            return int(np.argmax(props.pscore))
        best, self._candidates = self.select(props, out["x_f"])
        return best

    def accept(self, score: float) -> bool:
        """While lost, only a proposal scoring ``found_threshold`` moves the state."""
        return not (self._lost and score < self.config.found_threshold)

    def hold_state(self, frame_shape: tuple[int, ...]) -> tuple[float, float, float, float]:
        return (*self.center, *self.size)  # still lost: keep the state as it is

    def after_update(self, props: Proposals, best: int, moved: bool, out: Mapping[str, torch.Tensor]
                     ) -> None:
        """Grow the search while lost; else remember distractors and check for a new loss."""
        cfg = self.config
        if moved:  # tracking, or found again: back to the normal region
            if cfg.distractor_aware:
                self.remember_distractors(props, self._candidates, best, out["x_f"])
            self.instance_size = self._base_instance_size
        self._lost = self.long_term and still_lost(self._lost, float(props.score[best]), cfg.lost_threshold,
                                                   cfg.found_threshold)
        if self._lost:
            self._grow_search()  # lost: look wider

    def _track(self, frame: np.ndarray) -> TrackResult:
        result = super()._track(frame)
        result.extra["instance_size"] = self.instance_size  # the next frame's (grown while lost)
        return result

    def _grow_search(self) -> None:
        """One step of the local-to-global search: a larger region, up to the largest size."""
        cfg = self.config
        largest = max(s for s in self.search_sizes()
                      if (s - self._base_instance_size) % cfg.search_step == 0)
        self.instance_size = min(self.instance_size + cfg.search_step, largest)


_DASIAMRPN_RENAMES = {
    "conv_cls1": "rpn_head.template_cls_conv",
    "conv_r1": "rpn_head.template_loc_conv",
    "conv_cls2": "rpn_head.search_cls_conv",
    "conv_r2": "rpn_head.search_loc_conv",
    "regress_adjust": "rpn_head.loc_adjust",
}


def import_official_dasiamrpn(state: Mapping[str, torch.Tensor], config: DaSiamRPNConfig | None
                              ) -> dict[str, torch.Tensor]:
    """Map ``SiamRPNBIG.model`` / ``SiamRPNVOT.model`` / ``SiamRPNOTB.model`` to :class:`SiamRPNNet`.

    ``featureExtract.{i}`` -> ``backbone.conv{n}.{0|1}``; ``conv_cls1|conv_r1`` (template kernels),
    ``conv_cls2|conv_r2`` (search adapters) and ``regress_adjust`` -> the up-channel head. The VOT
    and OTB files need ``width_mult=1.0, hidden=256`` (``preset="vot"``/``"otb"``).
    """
    if any(k.startswith(("rpn_head.", "backbone.")) for k in state):
        raise KeyError("this is a pysot/siamfc-pytorch checkpoint (backbone.*/rpn_head.*): load it with "
                       "'siamrpn' or 'siamfc', not 'dasiamrpn'")
    _refuse_other_layouts(state, "dasiamrpn")
    if not any(k.startswith("featureExtract.") for k in state):
        raise KeyError("not a DaSiamRPN checkpoint: no 'featureExtract.*' keys")
    out = sequential_to_stages(state, "featureExtract", "backbone")
    for key, value in state.items():
        module, _, rest = key.partition(".")
        if module in _DASIAMRPN_RENAMES:
            out[f"{_DASIAMRPN_RENAMES[module]}.{rest}"] = value
        elif module != "featureExtract":
            raise KeyError(f"unexpected key for a DaSiamRPN checkpoint: '{key}'")
    missing = [m for m in _DASIAMRPN_RENAMES if f"{_DASIAMRPN_RENAMES[m]}.weight" not in out]
    if missing:
        raise KeyError(f"DaSiamRPN checkpoint lacks {missing}")
    return add_missing_bn_counters(out)


def detect_dasiamrpn_options(state: Mapping[str, torch.Tensor]) -> dict[str, float | int]:
    """Architecture of an official DaSiamRPN file read off its shapes: AlexNet ``width_mult``
    (BIG: 2, VOT/OTB: 1) and kernel channels ``hidden`` (BIG: 512, VOT/OTB: 256).

    The tracking hyper-parameters of VOT and OTB files differ but cannot be read off the weights:
    pass ``preset="vot"`` or ``"otb"``. Empty for other layouts (the importer
    then says what is wrong).
    """
    first, kernels = state.get("featureExtract.0.weight"), state.get("conv_cls1.weight")
    if first is None or kernels is None:
        return {}
    anchor_num = DaSiamRPNConfig().anchor_num
    return {"width_mult": first.shape[0] / 96, "hidden": kernels.shape[0] // (2 * anchor_num)}


@register_tracker("dasiamrpn", DaSiamRPNConfig,
                  description="DaSiamRPN: SiamRPN (BIG AlexNet) + distractor-aware re-ranking, "
                              "local-to-global search",
                  importer=import_official_dasiamrpn, detect_options=detect_dasiamrpn_options)
def build_dasiamrpn(config: DaSiamRPNConfig, device: torch.device) -> DaSiamRPNTracker:
    """Build a :class:`DaSiamRPNTracker` with an untrained :class:`SiamRPNNet` (the official
    checkpoints are up-channel; the distractor-aware loop works with the depthwise head too, which
    the MobileNetV2 weights trained here use)."""
    if config.head not in ("upchannel", "depthwise"):
        raise ValueError(f"dasiamrpn: head must be 'upchannel' or 'depthwise', got '{config.head}'")
    if config.search_step <= 0 or config.search_step % config.anchor_stride:
        raise ValueError(f"search_step must be a positive multiple of anchor_stride "
                         f"({config.anchor_stride}), got {config.search_step}")
    return DaSiamRPNTracker(SiamRPNNet(config), config, device)
