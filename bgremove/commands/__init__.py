"""Command groups beyond the default `remove`: one module each, registered at the end of cli.py.

Here too the one place where errors become messages and exit codes, for every command: a
UsageError exits 2, an error that carries its own code (a StopBatch) exits with it, any other
bgremove error 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer

from bgremove.errors import BgRemoveError, UsageError

EXIT_FAILED, EXIT_USAGE = 1, 2


def fail(message: str, code: int) -> NoReturn:
    typer.echo(f"bgremove: error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn bgremove's errors inside the block into a message on stderr and an exit code."""
    try:
        yield
    except UsageError as exc:
        fail(str(exc), EXIT_USAGE)
    except BgRemoveError as exc:
        fail(str(exc), getattr(exc, "exit_code", EXIT_FAILED))
