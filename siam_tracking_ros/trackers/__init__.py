"""Tracker variants. Each module registers itself with :mod:`.registry`."""

from siam_tracking_ros.trackers.base import InvalidBoxError, SiameseTracker
from siam_tracking_ros.trackers.registry import (
    build_tracker,
    get_spec,
    list_trackers,
    make_config,
    register_tracker,
)

__all__ = [
    "InvalidBoxError",
    "SiameseTracker",
    "build_tracker",
    "get_spec",
    "list_trackers",
    "make_config",
    "register_tracker",
]
