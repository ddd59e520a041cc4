"""Target presence without ROS: the IDLE / TRACKING / LOST state machine that follows the score.

One state machine for every variant. The score is read as "the target is there" when it is at or
above :attr:`LostPolicy.score_threshold` (the score is meant to be a calibrated presence
probability). ``lost_frames`` consecutive frames below it turn TRACKING into LOST; while LOST,
``found_frames`` consecutive frames at or above it and :attr:`LostPolicy.found_threshold` turn it
back into TRACKING. The tracker node
(:mod:`siam_tracking_ros.ros.tracking_core`) and the presence evaluation both drive it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class TargetState(IntEnum):
    """Same values as the constants of ``siam_tracking_ros/msg/TrackedObject``."""

    IDLE = 0
    TRACKING = 1
    LOST = 2


@dataclass
class LostPolicy:
    """When a target counts as lost and found again, and how wide to search while it is lost."""

    #: a frame scoring at or above this counts as "target seen"
    score_threshold: float = 0.5
    #: consecutive low-score frames before LOST
    lost_frames: int = 5
    #: consecutive high-score frames while LOST before TRACKING again
    found_frames: int = 2
    #: search-region scale asked of trackers (``set_search_scale``) while LOST
    lost_search_scale: float = 2.0
    #: while LOST, a frame counts as "target seen" only at or above this and ``score_threshold``
    #: (hysteresis: a wide search of a scene without the target keeps finding look-alikes that
    #: score just above the LOST threshold)
    found_threshold: float = 0.7

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem:
            raise ValueError(problem)

    def problem(self) -> str | None:
        """Why the values are unusable, or None."""
        if not math.isfinite(self.score_threshold):
            return f"score_threshold must be finite, got {self.score_threshold}"
        if int(self.lost_frames) < 1 or int(self.found_frames) < 1:
            return f"lost_frames and found_frames must be >= 1, got {self.lost_frames}, {self.found_frames}"
        if not (math.isfinite(self.lost_search_scale) and self.lost_search_scale >= 1.0):
            return f"lost_search_scale must be finite and >= 1, got {self.lost_search_scale}"
        if not math.isfinite(self.found_threshold):
            return f"found_threshold must be finite, got {self.found_threshold}"
        return None

    def seen_threshold(self, lost: bool) -> float:
        """The score a frame needs to count as "target seen" (also ``found_threshold`` while LOST)."""
        if lost:
            return float(max(self.score_threshold, self.found_threshold))
        return float(self.score_threshold)


class PresenceStateMachine:
    """Turns one score per frame into a :class:`TargetState`.

    Attributes after each :meth:`update`: ``state``, ``frames_since_seen`` (consecutive frames
    below the threshold), ``frame_count`` (frames since :meth:`start`), ``seen`` (the last score
    was at or above the threshold), ``just_lost`` / ``just_found`` (the last update changed the
    state to LOST / back to TRACKING). The policy is read at every update, so it may be changed
    in place between frames.
    """

    def __init__(self, policy: LostPolicy | None = None) -> None:
        self.policy = policy or LostPolicy()
        self.reset()

    def _clear(self, state: TargetState) -> None:
        self.state = state
        self.frames_since_seen = 0
        self.frame_count = 0
        self.seen = False
        self.just_lost = False
        self.just_found = False
        self._found_run = 0

    def start(self) -> None:
        """A target was just initialised: TRACKING, counters cleared."""
        self._clear(TargetState.TRACKING)

    def reset(self) -> None:
        """No target: IDLE."""
        self._clear(TargetState.IDLE)

    def lose(self) -> None:
        """Force LOST now (e.g. the image geometry changed under the target); IDLE stays IDLE."""
        if self.state != TargetState.IDLE:
            self.state, self.just_lost, self._found_run = TargetState.LOST, True, 0

    def update(self, score: float) -> TargetState:
        """Account for one frame's score; returns the new state (IDLE stays IDLE)."""
        self.just_lost = self.just_found = False
        if self.state == TargetState.IDLE:
            return self.state
        self.frame_count += 1
        threshold = self.policy.seen_threshold(self.state == TargetState.LOST)
        self.seen = math.isfinite(score) and score >= threshold
        self.frames_since_seen = 0 if self.seen else self.frames_since_seen + 1
        if self.state == TargetState.TRACKING:
            if self.frames_since_seen >= max(1, int(self.policy.lost_frames)):
                self.state, self.just_lost, self._found_run = TargetState.LOST, True, 0
        else:
            self._found_run = self._found_run + 1 if self.seen else 0
            if self._found_run >= max(1, int(self.policy.found_frames)):
                self.state, self.just_found, self._found_run = TargetState.TRACKING, True, 0
        return self.state


def platt_probability(raw_score: float, calibration: tuple[float, float] | None) -> float:
    """``sigmoid(a logit(raw) + b)`` of a probability-valued raw score; the raw score when
    ``calibration`` is None (Platt scaling fitted by :func:`~siam_tracking_ros.eval.presence.fit_platt`)."""
    if calibration is None:
        return raw_score
    a, b = calibration
    raw = min(max(raw_score, 1e-6), 1.0 - 1e-6)
    return float(1.0 / (1.0 + np.exp(-(a * np.log(raw / (1.0 - raw)) + b))))
