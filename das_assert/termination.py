"""SIGTERM as Ctrl-C: what CI timeouts, ``docker stop`` and Kubernetes send to stop a job.

Python's default action for SIGTERM ends the process at once, so a pytest run ended that way
runs none of its session finish: a report of an earlier run stays where it was asked for, as if
it were this run's, and a baseline's reservation stays behind. Raised as ``KeyboardInterrupt``,
it ends the run as Ctrl-C does: the reports say the run did not complete, no baseline is saved,
the reservation is released, and the command line says what it left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

__all__ = ["TerminatedError", "signals_deferred", "term_as_interrupt"]


class TerminatedError(KeyboardInterrupt):
    """SIGTERM, raised where the process was (pytest and the CLI handle it as Ctrl-C)."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise TerminatedError(f"stopped by signal {signal.Signals(signum).name}")


def _default_in_a_forked_child() -> None:
    """A process forked from this one (multiprocessing's workers on Linux) gets Python's default
    back: ``Process.terminate()`` must end it, not raise in its code."""
    if signal.getsignal(signal.SIGTERM) is _interrupt:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_default_in_a_forked_child)


def term_as_interrupt() -> Callable[[], None]:
    """Raise ``TerminatedError`` on SIGTERM, where SIGTERM has Python's default action and this
    is the main thread (a handler of the caller's own is kept); returns what undoes it."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return lambda: None
    signal.signal(signal.SIGTERM, _interrupt)

    def restore() -> None:
        if signal.getsignal(signal.SIGTERM) is _interrupt:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    return restore


@contextlib.contextmanager
def signals_deferred() -> Iterator[list[int]]:
    """Hold SIGINT and SIGTERM while the block runs (a run's reports and baseline being
    written): each is recorded in the list it yields, not raised, so that what the block
    writes is whole; the handlers before are put back after it. Nothing is held outside the
    main thread, where no handler can be set."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def record(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    before = {  # a signal ignored is left so
        sig: handler
        for sig in (signal.SIGINT, signal.SIGTERM)
        if (handler := signal.getsignal(sig)) is not signal.SIG_IGN
    }
    for sig in before:
        signal.signal(sig, record)
    try:
        yield received
    finally:
        for sig, handler in before.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
