"""Where the key database is when none is named: `$BGREMOVE_DB`, else a SQLite file in the
user's data folder. Its own module, free of the store's imports: the command line reads
`DB_ENV` to declare `--db`, and `bgremove --help` must stay quick."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

# The key store of `bgremove serve` and `bgremove keys` (their --db): a server's, not a run's.
DB_ENV = "BGREMOVE_DB"


def default_db_path() -> Path:
    """`$XDG_DATA_HOME/bgremove/keys.sqlite3`, else `~/.local/share/bgremove/keys.sqlite3`."""
    data_home = os.environ.get("XDG_DATA_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(data_home) if os.path.isabs(data_home) else Path.home() / ".local" / "share"
    return base / "bgremove" / "keys.sqlite3"


def db_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """The key store `$BGREMOVE_DB` names, if any (an empty variable counts as unset)."""
    return (os.environ if environ is None else environ).get(DB_ENV) or None


def default_location() -> str:
    """`$BGREMOVE_DB`, else the default SQLite file."""
    return db_from_env() or str(default_db_path())
