"""How the command line ends and speaks: its exit codes (docs/exit-codes.md's table), and its words
for the library's errors, whose messages name options by keyword (`max_size`) where the command
line names its flags (`--max-size`). Errors carry no exit code: what a failure means to a
shell is decided here, once.

This module is imported by `bgremove --help`: it must stay free of heavy imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bgremove.errors import (
    AuthenticationFailed,
    BgRemoveError,
    CreditLimitReached,
    Option,
    OutOfCredits,
    SetupError,
    UsageError,
    Words,
)

if TYPE_CHECKING:
    from bgremove.outcomes import Outcome, Summary

OK, FAILED, USAGE, AUTHENTICATION, CREDITS, SETUP, INTERRUPTED = 0, 1, 2, 3, 4, 5, 130

# Most specific first: the first class an error is an instance of gives its code.
_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (UsageError, USAGE),
    (AuthenticationFailed, AUTHENTICATION),
    (OutOfCredits, CREDITS),
    (CreditLimitReached, CREDITS),
    (SetupError, SETUP),
)

# Options whose flag is not `--` and the keyword with dashes.
_FLAGS = {"output": "-o"}


def exit_code(error: BaseException) -> int:
    """The exit code of a command that ends with `error`."""
    return next((code for kind, code in _CODES if isinstance(error, kind)), FAILED)


def exit_code_of(summary: Summary) -> int:
    """The exit code of a run that ended with `summary`: interrupted, stopped (by what stopped
    it), a failure (or, with --check, an output to make), or success."""
    if summary.interrupted:
        return INTERRUPTED
    if summary.stopped is not None:
        return exit_code(summary.stopped)
    return FAILED if summary.failed else OK


def flag(option: Option) -> str:
    """An option as the command line spells it: `--max-size N`, `--no-include-mask`, `-o x`."""
    name = _FLAGS.get(option.name) or "--" + option.name.replace("_", "-")
    if option.value == "False":
        return "--no-" + name.removeprefix("--")
    return name if option.value is None else f"{name} {option.value}"


def in_flags(error: BaseException | str) -> str:
    """The message of `error` (or a warning) with its options spelled as flags."""
    if isinstance(error, (BgRemoveError, Words)):
        return error.words(flag)
    return str(error)


def outcome_error(outcome: Outcome) -> str | None:
    """A failed outcome's reason, as the command line says it."""
    return in_flags(outcome.failure) if outcome.failure is not None else outcome.error
