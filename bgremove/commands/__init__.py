"""Command groups beyond the default `remove`: one module each, registered at the end of cli.py.

Here too the one place where errors become messages and exit codes, for every command: the
message with flags for the library's keywords, the code from bgremove/exits.py (a UsageError
exits 2, a StopBatch with its own code, any other bgremove error 1).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer

from bgremove.errors import BgRemoveError
from bgremove.exits import exit_code, in_flags


def fail(message: str, code: int) -> NoReturn:
    typer.echo(f"bgremove: error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn bgremove's errors inside the block into a message on stderr and an exit code."""
    try:
        yield
    except BgRemoveError as exc:
        fail(in_flags(exc), exit_code(exc))
