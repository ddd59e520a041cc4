"""The one proposal decision loop: penalty, cosine window, size smoothing and box update.

Per frame (pysot ``SiamRPNTracker``, DaSiamRPN, SiamMask, C-RPN):

1. crop the search region around the state (:meth:`DecisionLoop.search_region`),
2. run the network and decode every proposal (hook :meth:`DecisionLoop.decode`),
3. :func:`rank_proposals`: multiply the score by the scale/ratio change penalty (``penalty_k``) and
   blend with the cosine window (``window_influence``, hook :meth:`DecisionLoop.window_influence`),
4. choose a proposal (hook :meth:`DecisionLoop.choose`, default: the best ranked one; DaSiamRPN
   re-ranks against its distractors),
5. move towards it with rate ``lr * penalty * score`` (:func:`smoothed_state`) unless the hook
   :meth:`DecisionLoop.accept` holds the state, clip the state to the frame,
6. :meth:`DecisionLoop.after_update`: what a variant does with the outcome (lost-target
   bookkeeping with :func:`still_lost`, distractor memory).

The result is a :class:`Decision`; SiamMask turns it into its mask box. The pieces are plain
functions on arrays so that trackers with other proposal layouts (e.g. NanoTrack's points) can use
them too (NanoTrack ranks its points with :func:`rank_proposals` / :func:`blend_window` and moves
with :func:`step_state`). Registers nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from siam_tracking_ros.core.geometry import box_in_frame, clip_box_xywh, context_size, scale_ratio_penalty
from siam_tracking_ros.trackers.base import SiameseTracker


@dataclass
class Proposals:
    """All proposals of one frame, on the CPU, anchor-major.

    ``boxes`` are cxcywh in search-crop pixels relative to the crop centre.
    """

    score: np.ndarray
    boxes: np.ndarray
    penalty: np.ndarray
    pscore: np.ndarray


@dataclass(frozen=True)
class SearchRegion:
    """Where one frame is searched: crop ``side`` (source pixels, rounded as the crop is) from
    top-left ``origin``, resized to ``instance_size``; ``scale_z`` = exemplar size / ``s_z``."""

    instance_size: int
    side: float
    origin: tuple[float, float]
    scale_z: float


@dataclass
class Decision:
    """The chosen proposal of one frame: ``box`` (source pixels, its part inside the frame), its
    scores, its anchor-major ``index`` on the ``score_size`` map and the search ``region``."""

    box: tuple[float, float, float, float]
    score: float
    pscore: float
    index: int
    score_size: int
    region: SearchRegion


def rank_proposals(score: np.ndarray, boxes: np.ndarray, target_size: np.ndarray, window: np.ndarray,
                   penalty_k: float, influence: float, valid: np.ndarray | None = None) -> Proposals:
    """Penalise the size/ratio change of every proposal against ``target_size`` (both in crop
    pixels) and blend with the cosine ``window``; invalid proposals rank -1."""
    penalty = scale_ratio_penalty(boxes[:, 2], boxes[:, 3], target_size[0], target_size[1], penalty_k)
    return blend_window(score, boxes, penalty, window, influence, valid)


def blend_window(score: np.ndarray, boxes: np.ndarray, penalty: np.ndarray, window: np.ndarray,
                 influence: float, valid: np.ndarray | None = None) -> Proposals:
    """The ranking of :func:`rank_proposals` from a ``penalty`` computed elsewhere (e.g. OpenCV's)."""
    pscore = penalty * score * (1 - influence) + window * influence
    if valid is not None:
        pscore = np.where(valid, pscore, -1.0)
    return Proposals(score, boxes, penalty, pscore)


def smoothed_state(center: np.ndarray, size: np.ndarray, box: np.ndarray, rate: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Move to ``box`` (cxcywh offset from ``center``, source pixels): centre at once, size with ``rate``."""
    return center + box[:2], size * (1 - rate) + box[2:] * rate


def step_state(center: np.ndarray, size: np.ndarray, props: Proposals, best: int, scale_z: float,
               lr: float, frame_shape: tuple[int, ...], min_size: float
               ) -> tuple[float, float, float, float]:
    """The box update: move to proposal ``best`` (crop pixels / ``scale_z``) with rate
    ``lr * penalty * score`` (:func:`smoothed_state`), clipped to the frame: ``(cx, cy, w, h)``."""
    rate = props.penalty[best] * props.score[best] * lr
    center, size = smoothed_state(center, size, props.boxes[best] / scale_z, rate)
    return clip_box_xywh(*center, *size, frame_shape, min_size)


def still_lost(lost: bool, score: float, low: float, high: float, found_at_high: bool = True) -> bool:
    """A tracker's own lost flag after one frame (the one hysteresis of the trackers' wide-search
    modes): lost below ``low``; once lost, lost until a score reaches ``high`` (``found_at_high``:
    ``>= high``, DaSiamRPN; else ``> high``, pysot's ``SiamRPNLTTracker``)."""
    found = score >= high if found_at_high else score > high
    return score < low or (lost and not found)


def cast_features(features: Any, dtype: torch.dtype) -> Any:
    """``features`` (tensor or nested tuples/lists of tensors) converted to ``dtype``."""
    if isinstance(features, torch.Tensor):
        return features.to(dtype)
    return type(features)(cast_features(f, dtype) for f in features)


class DecisionLoop(SiameseTracker):
    """Tracking by ranking decoded proposals (see the module docstring).

    Subclasses provide :meth:`decode` and :meth:`proposal_geometry`; the hooks default to plain
    SiamRPN behaviour. Needs ``context_amount``, ``exemplar_size``, ``penalty_k``,
    ``window_influence``, ``lr`` and ``min_size`` in the config.
    """

    supports_cuda_graphs = True
    #: the search pass also returns the backbone features ``"x_f"`` (DaSiamRPN's distractors)
    wants_search_features = False

    def __init__(self, model: Any, config: Any, device: torch.device) -> None:
        super().__init__(model, config, device)
        self.instance_size: int = config.instance_size
        self.center = np.zeros(2)
        self.size = np.ones(2)
        self.features: Any = None
        self._features_dtype = self.dtype

    # --- hooks ---------------------------------------------------------------------------------

    def decode(self, out: Mapping[str, torch.Tensor], instance_size: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-proposal ``(score, boxes cxcywh in the search crop, valid)`` of the outputs."""
        raise NotImplementedError

    def proposal_geometry(self, instance_size: int) -> tuple[int, np.ndarray]:
        """``(score-map side, cosine window per proposal)`` of one search size."""
        raise NotImplementedError

    def search_size(self) -> int:
        """Side of the resized search crop for the next frame."""
        return self.instance_size

    def window_influence(self) -> float:
        """Weight of the cosine window in the ranking for the next frame."""
        return self.config.window_influence

    def choose(self, props: Proposals, out: Mapping[str, torch.Tensor]) -> int:
        """Index of the chosen proposal (default: the best ranked)."""
        return int(np.argmax(props.pscore))

    def accept(self, score: float) -> bool:
        """Whether the state moves to the chosen proposal (default: always)."""
        return True

    def hold_state(self, frame_shape: tuple[int, ...]) -> tuple[float, float, float, float]:
        """The state kept when :meth:`accept` refuses a move (default: clipped to the frame)."""
        return self.update_state(None, 0, 1.0, frame_shape, move=False)

    def after_update(self, props: Proposals, best: int, moved: bool, out: Mapping[str, torch.Tensor]
                     ) -> None:
        """What the variant does with this frame's outcome (default: nothing)."""

    # --- the loop ------------------------------------------------------------------------------

    def start(self, image: torch.Tensor, box: tuple[float, ...]) -> None:
        """Set the state to ``box`` and compute the template features from the uploaded frame."""
        cfg = self.config
        x, y, w, h = box
        self.center = np.array([x + w / 2, y + h / 2])
        self.size = np.array([w, h], dtype=np.float64)
        s_z = context_size(w, h, cfg.context_amount)
        z = self.crop(image, self.center, s_z, cfg.exemplar_size, self.avg_color)
        self.features = self.template_pass(z.to(self.dtype))
        self._features_dtype = self.dtype

    def search_region(self) -> SearchRegion:
        """The search crop of the next frame around the current state."""
        cfg = self.config
        s_z = context_size(*self.size, cfg.context_amount)
        instance = self.search_size()
        side = float(round(s_z * instance / cfg.exemplar_size))
        origin = (self.center[0] - side / 2.0, self.center[1] - side / 2.0)
        return SearchRegion(instance, side, origin, cfg.exemplar_size / s_z)

    def run_search(self, frame: np.ndarray, region: SearchRegion) -> dict[str, torch.Tensor]:
        """Run the network on the search crop of ``region``."""
        if self._features_dtype != self.dtype:  # half() was called after init
            self.features = cast_features(self.features, self.dtype)
            self._features_dtype = self.dtype
        image = self.upload(frame)
        x = self.crop(image, self.center, region.side, region.instance_size, self.avg_color)
        if self.wants_search_features:
            return self.search_pass(self.features, x.to(self.dtype), return_features=True)
        return self.search_pass(self.features, x.to(self.dtype))

    def proposals(self, out: Mapping[str, torch.Tensor], scale_z: float, instance_size: int) -> Proposals:
        """Decode, penalise and window every proposal of the outputs of one search size."""
        score, boxes, valid = self.decode(out, instance_size)
        window = self.proposal_geometry(instance_size)[1]
        return rank_proposals(score, boxes, self.size * scale_z, window, self.config.penalty_k,
                              self.window_influence(), valid)

    def update_state(self, props: Proposals | None, best: int, scale_z: float,
                     frame_shape: tuple[int, ...], move: bool = True) -> tuple[float, float, float, float]:
        """Move the target towards proposal ``best`` (unless ``move`` is false) and clip it to the
        frame; returns the new ``(cx, cy, w, h)``."""
        cfg = self.config
        if move and props is not None:
            state = step_state(self.center, self.size, props, best, scale_z, cfg.lr, frame_shape,
                               cfg.min_size)
        else:
            state = clip_box_xywh(*self.center, *self.size, frame_shape, cfg.min_size)
        self.center, self.size = np.array(state[:2]), np.array(state[2:])
        return state

    def decide(self, frame: np.ndarray) -> tuple[Decision, dict[str, torch.Tensor]]:
        """One tracking step on ``frame``: updates the state, returns the choice and the outputs."""
        region = self.search_region()
        out = self.run_search(frame, region)
        props = self.proposals(out, region.scale_z, region.instance_size)
        best = self.choose(props, out)
        moved = self.accept(float(props.score[best]))
        if moved:
            state = self.update_state(props, best, region.scale_z, frame.shape)
        else:
            state = self.hold_state(frame.shape)
        self.after_update(props, best, moved, out)
        decision = Decision(box_in_frame(*state, frame.shape), float(props.score[best]),
                            float(props.pscore[best]), best,
                            self.proposal_geometry(region.instance_size)[0], region)
        return decision, out
