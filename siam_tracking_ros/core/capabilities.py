"""What a tracker can do beyond ``init``/``track``/``reset``, declared by type.

A tracker class inherits the capabilities it has; callers (the node, siam-eval, siam-bench) check
them with ``isinstance`` instead of probing with ``getattr`` and catching errors:

    if isinstance(tracker, GlobalSearch):
        tracker.enable_global_search(state == LOST)

:func:`capabilities` names them for diagnostics and reports.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any


class GlobalSearch(ABC):
    """Can widen the search to re-detect a lost target (pysot long-term, DaSiamRPN local-to-global)."""

    @abstractmethod
    def enable_global_search(self, flag: bool = True) -> None:
        """Switch the wide search on (``True``) or back to the normal region (``False``)."""

    @property
    def global_search_configured(self) -> bool:
        """Whether the tracker's own config asks for the wide search all the time (the mode a
        caller that switched it on while the target was lost returns to)."""
        return False


class ScalableSearch(ABC):
    """Can search a multiple of its usual region (NanoTrack while the target is LOST)."""

    @abstractmethod
    def set_search_scale(self, scale: float) -> None:
        """Search ``scale`` times the usual region; 1 = normal."""


class MaskOutput:
    """``track`` results carry ``mask`` (frame-sized uint8) and ``polygon`` (rotated box)."""


class BatchedTargets(ABC):
    """Tracks several targets in one network pass per frame."""

    @abstractmethod
    def track_batch(self, frame: Any) -> Sequence[Any]:
        """One ``TrackResult`` per target, in the order the targets were initialised."""


#: capability name -> class, for :func:`capabilities`
CAPABILITIES: dict[str, type] = {
    "global_search": GlobalSearch,
    "search_scale": ScalableSearch,
    "mask": MaskOutput,
    "batched": BatchedTargets,
}


def capabilities(tracker: object) -> frozenset[str]:
    """Names of the capabilities ``tracker`` declares."""
    return frozenset(name for name, cls in CAPABILITIES.items() if isinstance(tracker, cls))
