"""The key store in one SQLite file: for `bgremove serve` on one host (and `uvicorn --workers N`).

Every method opens its own short-lived connection, so one store can be used from any thread and
from several processes at once (the CLI adding credits while the server charges them). Every
write runs inside `BEGIN IMMEDIATE`, which holds SQLite's one write lock from its first statement:
the check and the change of a balance, or of a rate log, cannot interleave with another's.
Written for SQLite 3.24 and later (no RETURNING: under the write lock an UPDATE and a SELECT are
as atomic as one statement).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from bgremove.server.store import (
    KeyInfo,
    KeyStore,
    RateDecision,
    StoreError,
    StoreUnavailable,
    check_credits,
    unknown,
)

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
-- A credit reserved for a request in progress; the row goes when the request ends.
CREATE TABLE IF NOT EXISTS charges (
    request_id  TEXT PRIMARY KEY,
    key_id      TEXT NOT NULL REFERENCES keys (id),
    replica     TEXT NOT NULL,
    reserved_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS replicas (
    id      TEXT PRIMARY KEY,
    seen_at REAL NOT NULL
);
-- The sliding log: one row per request let through, at most `limit` per key once trimmed.
CREATE TABLE IF NOT EXISTS rate_hits (
    key_id TEXT NOT NULL,
    at     REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS rate_hits_by_key ON rate_hits (key_id, at);
"""

# Seconds since the epoch, by the clock of the machine that holds the file (ms resolution).
_NOW = "((julianday('now') - 2440587.5) * 86400.0)"
_COLUMNS = "id, email, credits, used, created_at, last_used_at, revoked_at"


def _use_wal(db: sqlite3.Connection, patience: float = 30) -> None:
    """Switch the file to WAL, which lets the server read keys while another process writes
    credits. SQLite answers "locked" at once, without waiting out its busy timeout, when two
    connections switch a new file together (replicas starting at the same moment): so wait here."""
    deadline = time.monotonic() + patience
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _iso_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class SqliteKeyStore(KeyStore):
    """The key database at `path` (created on first use, readable by its owner only). `clock`:
    seconds since the epoch for the rate log instead of the database's own (a test's fake
    clock)."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float] | None = None):
        self._clock = clock
        self.path = Path(path).expanduser()
        self.location = str(self.path)
        try:
            if not self.path.parent.exists():
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            new = not self.path.exists()
            with self._connect() as db:
                _use_wal(db)
                db.executescript(_SCHEMA)
            if new:
                os.chmod(self.path, 0o600)  # emails and balances are nobody else's business
        except StoreError as exc:
            raise StoreUnavailable(f"cannot open the {exc}") from None
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot open the key database {self.path}: {exc.strerror or exc}") from None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # isolation_level=None: no implicit transactions; the writes below say BEGIN IMMEDIATE.
        try:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            try:
                yield db
            finally:
                db.close()
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise StoreError(f"key database {self.path}: {exc}") from None

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

    def _insert_key(self, key_id: str, key_hash: bytes, email: str, credits: int) -> bool:
        try:
            with self._write() as db:
                db.execute(
                    "INSERT INTO keys (id, key_hash, email, credits, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (key_id, key_hash, email, credits, _iso_now()),
                )
        except sqlite3.IntegrityError:
            return False
        return True

    def _key_with_hash(self, key_id: str) -> tuple[bytes, KeyInfo] | None:
        with self._connect() as db:
            row = db.execute(
                f"SELECT key_hash, {_COLUMNS} FROM keys WHERE id = ?", (key_id,)
            ).fetchone()
        return None if row is None else (row[0], KeyInfo(*row[1:]))

    def get(self, key_id: str) -> KeyInfo:
        with self._connect() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM keys WHERE id = ?", (key_id,)).fetchone()
        if row is None:
            raise unknown(key_id)
        return KeyInfo(*row)

    def reserve(self, key_id: str, request_id: str, replica: str) -> int | None:
        with self._write() as db:
            cursor = db.execute(
                "UPDATE keys SET credits = credits - 1, used = used + 1, last_used_at = ?"
                " WHERE id = ? AND credits > 0 AND revoked_at IS NULL",
                (_iso_now(), key_id),
            )
            if cursor.rowcount != 1:
                return None
            db.execute(
                f"INSERT INTO charges (request_id, key_id, replica, reserved_at)"
                f" VALUES (?, ?, ?, {_NOW})",
                (request_id, key_id, replica),
            )
            return db.execute("SELECT credits FROM keys WHERE id = ?", (key_id,)).fetchone()[0]

    def settle(self, request_id: str) -> bool:
        with self._write() as db:
            cursor = db.execute("DELETE FROM charges WHERE request_id = ?", (request_id,))
        return cursor.rowcount == 1

    def release(self, request_id: str) -> int | None:
        with self._write() as db:
            row = db.execute(
                "SELECT key_id FROM charges WHERE request_id = ?", (request_id,)
            ).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM charges WHERE request_id = ?", (request_id,))
            db.execute(
                "UPDATE keys SET credits = credits + 1, used = used - 1 WHERE id = ?", row
            )
            return db.execute("SELECT credits FROM keys WHERE id = ?", row).fetchone()[0]

    def heartbeat(self, replica: str) -> None:
        with self._write() as db:
            db.execute(
                f"INSERT INTO replicas (id, seen_at) VALUES (?, {_NOW})"
                f" ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at",
                (replica,),
            )

    def _give_back(self, db: sqlite3.Connection, where: str, params: tuple) -> int:
        """Return the credits of the charges matching `where` to their keys, and drop them."""
        rows = db.execute(
            f"SELECT key_id, COUNT(*) FROM charges WHERE {where} GROUP BY key_id", params
        ).fetchall()
        for key_id, n in rows:
            db.execute(
                "UPDATE keys SET credits = credits + ?, used = used - ? WHERE id = ?",
                (n, n, key_id),
            )
        db.execute(f"DELETE FROM charges WHERE {where}", params)
        return sum(n for _, n in rows)

    def sweep(self, dead_after: float) -> int:
        with self._write() as db:
            given = self._give_back(
                db,
                f"reserved_at < {_NOW} - ? AND replica NOT IN"
                f" (SELECT id FROM replicas WHERE seen_at >= {_NOW} - ?)",
                (dead_after, dead_after),
            )
            db.execute(f"DELETE FROM replicas WHERE seen_at < {_NOW} - ?", (dead_after,))
        return given

    def retire(self, replica: str) -> int:
        with self._write() as db:
            given = self._give_back(db, "replica = ?", (replica,))
            db.execute("DELETE FROM replicas WHERE id = ?", (replica,))
        return given

    def hit(self, key_id: str, limit: int, window: float) -> RateDecision:
        with self._write() as db:
            (now,) = (self._clock(),) if self._clock else db.execute(f"SELECT {_NOW}").fetchone()
            db.execute("DELETE FROM rate_hits WHERE key_id = ? AND at <= ?",
                       (key_id, now - window))
            (count,) = db.execute(
                "SELECT COUNT(*) FROM rate_hits WHERE key_id = ?", (key_id,)
            ).fetchone()
            allowed = count < limit
            if allowed:
                db.execute("INSERT INTO rate_hits (key_id, at) VALUES (?, ?)", (key_id, now))
                count += 1
            (oldest,) = db.execute(
                "SELECT MIN(at) FROM rate_hits WHERE key_id = ?", (key_id,)
            ).fetchone()
        reset_after = oldest + window - now if oldest is not None else 0.0
        return RateDecision(allowed, limit, max(0, limit - count), reset_after)

    def add_credits(self, key_id: str, credits: int) -> KeyInfo:
        check_credits(credits)
        with self._write() as db:
            cursor = db.execute(
                "UPDATE keys SET credits = credits + ? WHERE id = ?", (credits, key_id)
            )
        if cursor.rowcount != 1:
            raise unknown(key_id)
        return self.get(key_id)

    def revoke(self, key_id: str) -> KeyInfo:
        with self._write() as db:
            cursor = db.execute(
                "UPDATE keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
                (_iso_now(), key_id),
            )
        if cursor.rowcount != 1:
            raise unknown(key_id)
        return self.get(key_id)

    def count(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM keys").fetchone()[0]

    def reservations(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM charges").fetchone()[0]

    def list(self) -> list[KeyInfo]:
        with self._connect() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM keys ORDER BY created_at, rowid").fetchall()
        return [KeyInfo(*row) for row in rows]
