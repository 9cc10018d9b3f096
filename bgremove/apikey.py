"""Where the API key comes from, and a wrapper that keeps it out of every message.

Precedence, first found wins: `--api-key`, `--api-key-file`, the `BGREMOVE_API_KEY` environment
variable. A new source (a config file, say) is one more step in `resolve_api_key`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from bgremove.errors import UsageError

ENV_API_KEY = "BGREMOVE_API_KEY"


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


def resolve_api_key(
    api_key: str | None = None,
    api_key_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Secret | None:
    """The key from the first source that has one, or None when no source does."""
    if api_key:
        return Secret(api_key.strip())
    if api_key_file is not None:
        return Secret(read_key_file(api_key_file))
    env = os.environ if environ is None else environ
    if env.get(ENV_API_KEY, "").strip():
        return Secret(env[ENV_API_KEY].strip())
    return None
