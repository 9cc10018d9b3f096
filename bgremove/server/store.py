"""API keys and their credits, in one SQLite file.

A key looks like `bgr_<id>_<secret>`. The id is not secret: it names the key in listings, logs and
management commands. Only the SHA-256 of the whole key is stored (the secret has 256 bits of
entropy, so a plain hash is as strong as a slow one), and it is compared in constant time.

Every method opens its own short-lived connection, so one store can be used from any thread and
from several processes at once (the CLI adding credits while the server charges them). Charging is
one conditional UPDATE inside `BEGIN IMMEDIATE`: the balance can never go below zero and a request
is never charged twice, however many arrive at once.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bgremove.errors import UsageError

KEY_PREFIX = "bgr_"
_ID_HEX = 12  # 48 bits: collisions are re-drawn, and ids are not secret anyway
_KEY_RE = re.compile(rf"^{KEY_PREFIX}([0-9a-f]{{{_ID_HEX}}})_[A-Za-z0-9_-]{{43}}$")
# Emails travel back in the x-user-email header, so they must be plain printable ASCII.
_EMAIL_RE = re.compile(r"^[!-~]+@[!-~]+$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id           TEXT PRIMARY KEY,
    key_hash     BLOB NOT NULL UNIQUE,
    email        TEXT NOT NULL,
    credits      INTEGER NOT NULL CHECK (credits >= 0),
    used         INTEGER NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
);
"""


class UnknownKeyId(UsageError):
    """No key has this id."""


def default_db_path() -> Path:
    """`$BGREMOVE_DB`, else `$XDG_DATA_HOME/bgremove/keys.sqlite3`, else `~/.local/share/...`."""
    if os.environ.get("BGREMOVE_DB"):
        return Path(os.environ["BGREMOVE_DB"]).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(data_home) if os.path.isabs(data_home) else Path.home() / ".local" / "share"
    return base / "bgremove" / "keys.sqlite3"


@dataclass(frozen=True)
class KeyInfo:
    """Everything about a key except its secret."""

    id: str
    email: str
    credits: int
    used: int
    created_at: str
    last_used_at: str | None
    revoked_at: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "email": self.email,
            "credits": self.credits,
            "used": self.used,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
            "revoked_at": self.revoked_at,
            "active": self.active,
        }


def key_id_of(key: str) -> str | None:
    """The id part of a key, or None if it is not shaped like one of ours."""
    match = _KEY_RE.match(key)
    return match.group(1) if match else None


def _hash(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


_COLUMNS = "id, email, credits, used, created_at, last_used_at, revoked_at"


class KeyStore:
    """The key and credit database at `path` (created on first use)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path).expanduser()
        if not self.path.parent.exists():
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        new = not self.path.exists()
        with self._connect() as db:
            # WAL lets the server read keys while another process writes credits.
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        if new:
            os.chmod(self.path, 0o600)  # emails and balances are nobody else's business

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # isolation_level=None: no implicit transactions; the writes below say BEGIN IMMEDIATE.
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds SQLite's write lock from its first statement."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def create(self, email: str, credits: int) -> str:
        """Add a key for `email` with `credits`; return the key itself (it is not stored)."""
        email = email.strip()
        if not _EMAIL_RE.match(email) or len(email) > 254:
            raise UsageError(f"not an email address: {email!r}")
        if credits < 0:
            raise UsageError("credits cannot be negative")
        while True:
            key_id = secrets.token_hex(_ID_HEX // 2)
            key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
            try:
                with self._write() as db:
                    db.execute(
                        "INSERT INTO keys (id, key_hash, email, credits, created_at)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (key_id, _hash(key), email, credits, _now()),
                    )
                return key
            except sqlite3.IntegrityError:  # id already taken: draw another
                continue

    def get(self, key_id: str) -> KeyInfo:
        with self._connect() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM keys WHERE id = ?", (key_id,)).fetchone()
        if row is None:
            raise UnknownKeyId(f"no key with id {key_id!r} (see `bgremove keys list`)")
        return KeyInfo(*row)

    def authenticate(self, key: str) -> KeyInfo | None:
        """The key's record if `key` is one of ours (revoked or not), else None."""
        key_id = key_id_of(key)
        if key_id is None:
            return None
        with self._connect() as db:
            row = db.execute(
                f"SELECT key_hash, {_COLUMNS} FROM keys WHERE id = ?", (key_id,)
            ).fetchone()
        if row is None or not hmac.compare_digest(row[0], _hash(key)):
            return None
        return KeyInfo(*row[1:])

    def charge(self, key_id: str) -> int | None:
        """Take one credit from an active key; return what is left, or None if there was none."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE keys SET credits = credits - 1, used = used + 1, last_used_at = ?"
                " WHERE id = ? AND credits > 0 AND revoked_at IS NULL",
                (_now(), key_id),
            )
            if cursor.rowcount != 1:
                return None
            return db.execute("SELECT credits FROM keys WHERE id = ?", (key_id,)).fetchone()[0]

    def refund(self, key_id: str) -> int:
        """Give back a credit taken by `charge` for work that then failed."""
        with self._write() as db:
            db.execute(
                "UPDATE keys SET credits = credits + 1, used = used - 1 WHERE id = ?", (key_id,)
            )
            row = db.execute("SELECT credits FROM keys WHERE id = ?", (key_id,)).fetchone()
        return row[0] if row else 0

    def add_credits(self, key_id: str, credits: int) -> KeyInfo:
        if credits <= 0:
            raise UsageError("the number of credits to add must be positive")
        with self._write() as db:
            cursor = db.execute(
                "UPDATE keys SET credits = credits + ? WHERE id = ?", (credits, key_id)
            )
        if cursor.rowcount != 1:
            raise UnknownKeyId(f"no key with id {key_id!r} (see `bgremove keys list`)")
        return self.get(key_id)

    def revoke(self, key_id: str) -> KeyInfo:
        """Refuse the key from now on. Its record stays, for the books."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
                (_now(), key_id),
            )
        if cursor.rowcount != 1:
            raise UnknownKeyId(f"no key with id {key_id!r} (see `bgremove keys list`)")
        return self.get(key_id)

    def count(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM keys").fetchone()[0]

    # Last, so that the name `list` means the builtin everywhere above.
    def list(self) -> list[KeyInfo]:
        """Every key, oldest first, without secrets."""
        with self._connect() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM keys ORDER BY created_at, rowid").fetchall()
        return [KeyInfo(*row) for row in rows]
