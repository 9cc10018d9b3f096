"""Ctrl-C and SIGTERM both mean "stop": a CI runner cancelling a job (SIGINT, then SIGTERM a few
seconds later) gets the same clean stop as a person pressing Ctrl-C."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _in_main_thread() -> bool:
    # Python delivers signals to, and lets only, the main thread install handlers.
    return threading.current_thread() is threading.main_thread()


_early = 0


def _count(_sig: int, _frame: object) -> None:
    global _early
    _early += 1
    if _early > 1:
        raise KeyboardInterrupt  # a second one: out at once


def count_early() -> None:
    """From the start of the process until a command takes over, SIGINT and SIGTERM are counted
    (a second one raises KeyboardInterrupt): a Ctrl-C while Python imports and the command line
    is parsed is then handled by the command, not lost in a traceback."""
    if _in_main_thread():
        for sig in SIGNALS:
            signal.signal(sig, _count)


def take_early() -> int:
    """How many interrupts came before the command took over (and forget them)."""
    global _early
    count, _early = _early, 0
    return count


def like_ctrl_c() -> None:
    """For commands without a batch: SIGINT and SIGTERM raise KeyboardInterrupt (SIGTERM too,
    instead of killing the process on the spot), so both end the same way: exit code 130. One
    that came before is raised now."""
    if _in_main_thread():
        for sig in SIGNALS:
            signal.signal(sig, signal.default_int_handler)
    if take_early():
        raise KeyboardInterrupt


@contextmanager
def calling(callback: Callable[[], None]) -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM call `callback` instead of raising
    KeyboardInterrupt. An exception can strike anywhere, even between finishing a file and
    recording it; a callback lets the batch stop at a point of its choosing."""
    if not _in_main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda _sig, _frame: callback()) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def exit_now(code: int) -> NoReturn:
    """Exit at once, without waiting for abandoned worker threads (a normal exit joins them,
    which would wait for the very work the user asked to abandon)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
