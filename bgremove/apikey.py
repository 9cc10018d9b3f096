"""Where the API key comes from, and a wrapper that keeps it out of every message.

The key is a setting like any other (`--api-key`, `BGREMOVE_API_KEY`, `api_key` in the config
file), or a file holding it (`--api-key-file`, `BGREMOVE_API_KEY_FILE`, `api_key_file`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bgremove.errors import UsageError

if TYPE_CHECKING:
    from bgremove.cli.settings import Settings


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
        raise UsageError(f"--api-key-file {path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--api-key-file {path}: not a text file") from None
    key = text.strip()
    if not key or any(c.isspace() for c in key):
        # Never quote the content: it may be a key with a typo in it.
        raise UsageError(f"--api-key-file {path}: expected the key alone on one line")
    return key


def api_key_from(settings: Settings) -> Secret | None:
    """The key from `api_key` or `api_key_file`, whichever comes from the stronger source
    (command line, then environment, then config file); the key itself when both tie."""
    from bgremove.cli.settings import rank

    def strength(name: str) -> int:
        return rank(settings.sources.get(name, "default"))

    key_file = settings.api_key_file
    if key_file is not None and (
            settings.api_key is None or strength("api_key_file") > strength("api_key")):
        return Secret(read_key_file(Path(key_file)))
    return Secret(settings.api_key) if settings.api_key else None
