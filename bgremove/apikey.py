"""A wrapper that keeps the API key out of every message, and the reading of a key file.

Which of the settings gives the key (`api_key` or `api_key_file`, from the command line, the
environment or the config file) is the command line's to decide (cli/settings.api_key_from).
"""

from __future__ import annotations

from pathlib import Path

from bgremove.errors import Option, UsageError


class Secret:
    """A string that does not show itself: repr() and str() print a mask, never the value.

    The key is read only where it goes on the wire (`reveal()`), so a stray print, log line,
    f-string or traceback-with-locals cannot leak it.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def redact(self, text: str) -> str:
        """`text` with every occurrence of the secret masked (for messages that echo input)."""
        return text.replace(self._value, "***") if self._value else text

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def read_key_file(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(Option("api_key_file"), f" {path}: cannot read: {exc.strerror or exc}",
                         path=path) from None
    except UnicodeDecodeError:
        raise UsageError(Option("api_key_file"), f" {path}: not a text file", path=path) from None
    key = text.strip()
    if not key or any(c.isspace() for c in key):
        # Never quote the content: it may be a key with a typo in it.
        raise UsageError(Option("api_key_file"), f" {path}: expected the key alone on one line",
                         path=path)
    return key

