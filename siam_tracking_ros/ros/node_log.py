"""Logging of the tracker node's parts: a severity chosen at run time, throttled warnings."""

from __future__ import annotations

import math
import time
from typing import Any


class NodeLog:
    """Wraps an rclpy logger (``node.get_logger()``)."""

    def __init__(self, logger: Any) -> None:
        self.logger = logger
        self._last_warning: dict[str, float] = {}

    def at(self, level: str, text: str) -> None:
        """Log ``text`` at ``level`` (``error``, ``warn``, else info); rclpy wants one severity per
        call site, so each severity has its own."""
        if level == "error":
            self.logger.error(text)
        elif level == "warn":
            self.logger.warning(text)
        else:
            self.logger.info(text)

    def warn_throttled(self, text: str, key: str = "frames", period: float = 2.0) -> None:
        """Warn at most once per ``period`` seconds for each ``key``."""
        now = time.monotonic()
        if now - self._last_warning.get(key, -math.inf) >= period:
            self._last_warning[key] = now
            self.logger.warning(text)
