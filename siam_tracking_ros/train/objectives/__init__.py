"""Label assignment and losses per head kind (``fc``, ``rpn``, ``ban``, ``mask``, ...)."""

from siam_tracking_ros.train.objectives.base import (
    HeadGeometry,
    Objective,
    geometry_from,
    list_objectives,
    make_objective,
    register_objective,
)

__all__ = ["HeadGeometry", "Objective", "geometry_from", "list_objectives", "make_objective",
           "register_objective"]
