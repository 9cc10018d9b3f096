"""The optional extras (pyproject's `[project.optional-dependencies]`), and the one message that
says how to install one when a feature needs it: `needs_extra` around the import."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from bgremove.errors import UsageError


@contextmanager
def needs_extra(extra: str, modules: Iterable[str], what: str, *, note: str = "",
                error: type[UsageError] = UsageError) -> Iterator[None]:
    """Inside the block, a missing module of `modules` (top-level names) is an `error` saying
    that `what` needs `extra`; any other missing module is a bug, and passes through."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in set(modules):
            raise
        raise error(f"{exc.name} is not installed; {what} needs the {extra} extra: "
                    f"pip install 'bgremove[{extra}]'{note}") from None
