"""Clean Ctrl-C for the executables: the first SIGINT stops spinning, later ones are ignored.

In a terminal, Ctrl-C reaches every process of the foreground group, and ``ros2 launch`` then
forwards its own SIGINT to each child: a node gets two. Python's default handler raises
``KeyboardInterrupt`` for the second one too, in the middle of cleanup (joining a worker,
releasing a capture), which prints a traceback and ends the process with -2. Installing
:func:`install_interrupt_once` *before* ``rclpy.init`` (rclpy chains its handler to the Python
one) makes the first SIGINT raise ``KeyboardInterrupt`` as usual and every later one a no-op;
:func:`disarm_interrupts` at the start of cleanup also silences a first SIGINT that arrives after
spinning already ended another way (rclpy's own handler shuts the context down first), and
:func:`ignore_interrupts_until_exit` after ``rclpy.try_shutdown`` keeps a late SIGINT from killing
the process while the interpreter finalises (Python restores the default handler for SIGINT at
exit unless it is ignored; launch then reports exit code -2).
"""

from __future__ import annotations

import signal
import threading
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


def install_interrupt_once(signals: tuple[int, ...] = (signal.SIGINT,)) -> InterruptOnce | None:
    """Install one :class:`InterruptOnce` for ``signals``; returns it (None off the main thread,
    where Python cannot set signal handlers and nothing is changed)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    handler = InterruptOnce()
    for number in signals:
        signal.signal(number, handler)
    return handler


def ignore_interrupts_until_exit() -> None:
    """Ignore SIGINT at the OS level for the rest of the process (main thread only)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def end_after_interrupt_at_start() -> int:
    """For a Ctrl-C that arrived while the node was still being built: shut rclpy down, exit code 0."""
    import rclpy

    disarm_interrupts()
    rclpy.try_shutdown()
    ignore_interrupts_until_exit()
    return 0


def disarm_interrupts() -> None:
    """Make an installed :class:`InterruptOnce` ignore SIGINT from now on (no-op otherwise)."""
    handler = signal.getsignal(signal.SIGINT)
    if isinstance(handler, InterruptOnce):
        handler.disarm()
