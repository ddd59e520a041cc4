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
    "mask": MaskOutput,
    "batched": BatchedTargets,
}


def capabilities(tracker: object) -> frozenset[str]:
    """Names of the capabilities ``tracker`` declares."""
    return frozenset(name for name, cls in CAPABILITIES.items() if isinstance(tracker, cls))
