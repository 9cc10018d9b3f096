"""The commands, one module each (remove, config, serve, keys, models), registered by cli.py.

Here too the one place where errors become messages and exit codes, for every command: the
message with flags for the library's keywords, the code from bgremove/cli/exits.py (a UsageError
exits 2, a StopBatch with its own code, any other bgremove error 1).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer

from bgremove.cli.exits import exit_code, in_flags
from bgremove.errors import BgRemoveError


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
