"""What multi-level backbones share: the check of the levels they return. Registers nothing."""

from __future__ import annotations

from collections.abc import Sequence


def checked_levels(used_layers: Sequence[int], last: int) -> tuple[int, ...]:
    """``used_layers`` as a tuple of ints, each within ``0..last``; ``ValueError`` otherwise."""
    used = tuple(int(i) for i in used_layers)
    if not used or min(used) < 0 or max(used) > last:
        raise ValueError(f"used_layers must be within 0..{last}, got {list(used_layers)}")
    return used
