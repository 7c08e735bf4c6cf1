"""Signals that end a command: SIGTERM (kill, timeout, a scheduler) and SIGHUP (the terminal
closed) unwind like Ctrl-C, so MLflow runs end KILLED and partial files are removed.

A signal that arrives while a run is being created or ended waits until that is done
(`deferred_while`, and `ids.tracking.store.start_run` inline), so a run is never created
without being ended, nor half ended.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

deferred = 0  # > 0: inside a section that creates or ends a run
pending: int | None = None  # the signal that arrived meanwhile


def end_runs_killed_on_sigterm() -> None:
    """Install the handlers; entry points call this once, from the main thread."""
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, _on_signal)


def _on_signal(signum: int, _frame) -> None:
    global pending
    if deferred:
        pending = signum
        return
    _unwind(signum)


def _unwind(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    sys.exit(128 + signum)


@contextmanager
def deferred_while() -> Iterator[None]:
    """The block runs whole: a signal arriving inside it acts when it ends."""
    global deferred
    deferred += 1  # inline, not a call: Python runs signal handlers at calls and loops
    try:
        yield
    finally:
        resume()


def resume() -> None:
    """End a deferred section; the signal that arrived meanwhile, if any, acts now."""
    global deferred, pending
    deferred -= 1
    if not deferred and pending is not None:
        signum, pending = pending, None
        _unwind(signum)
