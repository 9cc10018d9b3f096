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


def sigterm_like_ctrl_c() -> None:
    """Outside a batch, SIGTERM raises KeyboardInterrupt as Ctrl-C does (instead of killing the
    process on the spot), so it ends the same way: exit code 130."""
    if _in_main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)


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
