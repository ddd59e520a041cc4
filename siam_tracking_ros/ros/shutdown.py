"""Clean Ctrl-C for the executables: the first SIGINT stops spinning, later ones are ignored.

In a terminal, Ctrl-C reaches every process of the foreground group, and ``ros2 launch`` then
forwards its own SIGINT to each child: a node gets two. Python's default handler raises
``KeyboardInterrupt`` for the second one too, in the middle of cleanup (joining a worker,
releasing a capture), which prints a traceback and ends the process with -2. Installing
:func:`install_interrupt_once` *before* ``rclpy.init`` (rclpy chains its handler to the Python
one) makes the first SIGINT raise ``KeyboardInterrupt`` as usual and every later one a no-op;
:func:`disarm_interrupts` at the start of cleanup also silences a first SIGINT that arrives after
spinning already ended another way (rclpy's own handler shuts the context down first).
"""

from __future__ import annotations

import signal
from types import FrameType


class InterruptOnce:
    """Signal handler raising ``KeyboardInterrupt`` the first time only."""

    def __init__(self) -> None:
        self.interrupted = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.interrupted:
            return
        self.interrupted = True
        raise KeyboardInterrupt

    def disarm(self) -> None:
        """Ignore every signal it handles from now on."""
        self.interrupted = True


def install_interrupt_once(signals: tuple[int, ...] = (signal.SIGINT,)) -> InterruptOnce:
    """Install one :class:`InterruptOnce` for ``signals`` (main thread only); returns it."""
    handler = InterruptOnce()
    for number in signals:
        signal.signal(number, handler)
    return handler


def disarm_interrupts() -> None:
    """Make an installed :class:`InterruptOnce` ignore SIGINT from now on (no-op otherwise)."""
    handler = signal.getsignal(signal.SIGINT)
    if isinstance(handler, InterruptOnce):
        handler.disarm()
