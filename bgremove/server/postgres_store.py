"""The key store in PostgreSQL: for several `bgremove serve` replicas sharing one database.

psycopg 3 with its connection pool (the `postgres` extra); a dozen plain statements, no ORM.
Each method is one short transaction on a pooled connection (checked before use, so a restarted
database costs no failed request). What must be exact across replicas is decided inside the
database: credits by a conditional UPDATE (row locks order concurrent reservations), the rate log
under a lock on the key's row and stamped by the database's clock, so replicas with skewed clocks
still count one window.

The password comes from PGPASSWORD or a pgpass file, as libpq looks for them; it is never shown
(`location` and every error message have it masked).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from bgremove.server.store import (
    KeyInfo,
    KeyStore,
    RateDecision,
    StoreError,
    StoreUnavailable,
    check_credits,
    redact,
    unknown,
    url_password,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id           text PRIMARY KEY,
    key_hash     bytea NOT NULL UNIQUE,
    email        text NOT NULL,
    credits      bigint NOT NULL CHECK (credits >= 0),
    used         bigint NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
-- A credit reserved for a request in progress; the row goes when the request ends.
CREATE TABLE IF NOT EXISTS charges (
    request_id  text PRIMARY KEY,
    key_id      text NOT NULL REFERENCES keys (id),
    replica     text NOT NULL,
    reserved_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS replicas (
    id      text PRIMARY KEY,
    seen_at timestamptz NOT NULL
);
-- The sliding log: one row per request let through (seconds since the epoch, by the database's
-- clock), at most `limit` per key once trimmed.
CREATE TABLE IF NOT EXISTS rate_hits (
    key_id text NOT NULL,
    at     double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS rate_hits_by_key ON rate_hits (key_id, at);
"""
# Replicas starting together would race on CREATE TABLE IF NOT EXISTS (it is not atomic in
# PostgreSQL): they take turns under this transaction-scoped advisory lock.
_SCHEMA_LOCK = 0x6267_7265_6D76  # "bgremv"
_COLUMNS = "id, email, credits, used, created_at, last_used_at, revoked_at"
_TABLES_PRESENT = ", ".join(f"to_regclass('{table}') IS NOT NULL"
                            for table in ("keys", "charges", "replicas", "rate_hits"))


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat(timespec="seconds")


def _info(row: tuple[Any, ...]) -> KeyInfo:
    key_id, email, credits, used, created, last_used, revoked = row
    # created_at is NOT NULL: always a time.
    return KeyInfo(key_id, email, credits, used, _iso(created) or "", _iso(last_used),
                   _iso(revoked))


def _one(cursor: psycopg.Cursor[Any]) -> tuple[Any, ...]:
    """The row of a statement that always returns one (an aggregate; an UPDATE ... RETURNING of a
    row this transaction holds)."""
    row = cursor.fetchone()
    if row is None:  # pragma: no cover - the database broke its own promise
        raise StoreError("the key database returned no row where one is always returned")
    return row


class PostgresKeyStore(KeyStore):
    """The key database at `url` (postgresql://USER@HOST:PORT/DBNAME), tables created on first
    use; at most `pool_size` connections from this process. `clock`: seconds since the epoch for
    the rate log instead of the database's own (a test's fake clock)."""

    def __init__(self, url: str, *, pool_size: int = 10, connect_timeout: float = 10.0,
                 clock: Callable[[], float] | None = None):
        self._clock = clock
        self._password = url_password(url)
        self.location = redact(url)
        try:
            # One plain connection first: a wrong host, database or password is reported now,
            # with libpq's own reason, rather than as a pool timeout on the first request.
            with psycopg.connect(url, connect_timeout=max(1, round(connect_timeout))) as conn:
                # Only where a table is missing: a role allowed to use the tables but not to
                # create any (the usual set-up for a service) must not need CREATE.
                present = _one(conn.execute(f"SELECT {_TABLES_PRESENT}"))
                if not all(present):
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                    conn.execute(_SCHEMA)
        except psycopg.Error as exc:
            raise StoreUnavailable(
                f"cannot open the key database {self.location}: {self._clean(exc)}"
            ) from None
        self.pool = ConnectionPool(
            url, min_size=1, max_size=max(1, pool_size), timeout=connect_timeout,
            check=ConnectionPool.check_connection, name="bgremove-keys", open=True,
        )

    def _clean(self, exc: BaseException) -> str:
        text = str(exc).strip() or type(exc).__name__
        return text.replace(self._password, "***") if self._password else text

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection]:
        """One transaction on a pooled connection: committed at the end, rolled back on error."""
        try:
            with self.pool.connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:  # the database is down or unreachable
            raise StoreUnavailable(f"key database {self.location}: {self._clean(exc)}") from None
        except psycopg.Error as exc:
            raise StoreError(f"key database error: {self._clean(exc)}") from None

    def close(self) -> None:
        self.pool.close()

    def _insert_key(self, key_id: str, key_hash: bytes, email: str, credits: int) -> bool:
        with self._tx() as conn:
            cursor = conn.execute(
                "INSERT INTO keys (id, key_hash, email, credits) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (id) DO NOTHING",
                (key_id, key_hash, email, credits),
            )
            return cursor.rowcount == 1

    def _key_with_hash(self, key_id: str) -> tuple[bytes, KeyInfo] | None:
        with self._tx() as conn:
            row = conn.execute(
                f"SELECT key_hash, {_COLUMNS} FROM keys WHERE id = %s", (key_id,)
            ).fetchone()
        return None if row is None else (bytes(row[0]), _info(row[1:]))

    def get(self, key_id: str) -> KeyInfo:
        with self._tx() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM keys WHERE id = %s", (key_id,)).fetchone()
        if row is None:
            raise unknown(key_id)
        return _info(row)

    def reserve(self, key_id: str, request_id: str, replica: str) -> int | None:
        with self._tx() as conn:
            row = conn.execute(
                "UPDATE keys SET credits = credits - 1, used = used + 1, last_used_at = now()"
                " WHERE id = %s AND credits > 0 AND revoked_at IS NULL RETURNING credits",
                (key_id,),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "INSERT INTO charges (request_id, key_id, replica) VALUES (%s, %s, %s)",
                (request_id, key_id, replica),
            )
            return row[0]

    def settle(self, request_id: str) -> bool:
        with self._tx() as conn:
            cursor = conn.execute("DELETE FROM charges WHERE request_id = %s", (request_id,))
            return cursor.rowcount == 1

    def release(self, request_id: str) -> int | None:
        with self._tx() as conn:
            row = conn.execute(
                "DELETE FROM charges WHERE request_id = %s RETURNING key_id", (request_id,)
            ).fetchone()
            if row is None:
                return None
            (credits,) = _one(conn.execute(
                "UPDATE keys SET credits = credits + 1, used = used - 1 WHERE id = %s"
                " RETURNING credits",
                row,
            ))
            return int(credits)

    def heartbeat(self, replica: str) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO replicas (id, seen_at) VALUES (%s, now())"
                " ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at",
                (replica,),
            )

    # The charges deleted here are given back in the same statement, so a reservation is
    # returned once even when several replicas sweep at the same moment (the second DELETE
    # finds the row gone).
    _GIVE_BACK = """
        WITH gone AS (DELETE FROM charges c WHERE {where} RETURNING key_id),
             counts AS (SELECT key_id, count(*) AS n FROM gone GROUP BY key_id)
        UPDATE keys k SET credits = k.credits + counts.n, used = k.used - counts.n
          FROM counts WHERE k.id = counts.key_id
        RETURNING counts.n
    """

    def sweep(self, dead_after: float) -> int:
        with self._tx() as conn:
            rows = conn.execute(
                self._GIVE_BACK.format(where=(
                    "c.reserved_at < now() - make_interval(secs => %(dead)s) AND NOT EXISTS"
                    " (SELECT 1 FROM replicas r WHERE r.id = c.replica"
                    "  AND r.seen_at >= now() - make_interval(secs => %(dead)s))")),
                {"dead": dead_after},
            ).fetchall()
            conn.execute("DELETE FROM replicas WHERE seen_at < now() - make_interval(secs => %s)",
                         (dead_after,))
        return sum(n for (n,) in rows)

    def retire(self, replica: str) -> int:
        with self._tx() as conn:
            rows = conn.execute(
                self._GIVE_BACK.format(where="c.replica = %(replica)s"), {"replica": replica}
            ).fetchall()
            conn.execute("DELETE FROM replicas WHERE id = %s", (replica,))
        return sum(n for (n,) in rows)

    def hit(self, key_id: str, limit: int, window: float) -> RateDecision:
        with self._tx() as conn:
            # Requests of one key take turns here, whichever replica they reach; the clock is
            # read once the turn has come, so the log's stamps are in the order of the turns.
            conn.execute("SELECT 1 FROM keys WHERE id = %s FOR NO KEY UPDATE", (key_id,))
            (now,) = ((self._clock(),) if self._clock else
                      _one(conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8")))
            conn.execute("DELETE FROM rate_hits WHERE key_id = %s AND at <= %s",
                         (key_id, now - window))
            count, oldest = _one(conn.execute(
                "SELECT count(*), min(at) FROM rate_hits WHERE key_id = %s", (key_id,)
            ))
            allowed = count < limit
            if allowed:
                conn.execute("INSERT INTO rate_hits (key_id, at) VALUES (%s, %s)", (key_id, now))
                count += 1
                oldest = now if oldest is None else oldest
        reset_after = oldest + window - now if oldest is not None else 0.0
        return RateDecision(allowed, limit, max(0, limit - count), reset_after)

    def add_credits(self, key_id: str, credits: int) -> KeyInfo:
        check_credits(credits)
        with self._tx() as conn:
            row = conn.execute(
                f"UPDATE keys SET credits = credits + %s WHERE id = %s RETURNING {_COLUMNS}",
                (credits, key_id),
            ).fetchone()
        if row is None:
            raise unknown(key_id)
        return _info(row)

    def revoke(self, key_id: str) -> KeyInfo:
        with self._tx() as conn:
            row = conn.execute(
                "UPDATE keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = %s"
                f" RETURNING {_COLUMNS}",
                (key_id,),
            ).fetchone()
        if row is None:
            raise unknown(key_id)
        return _info(row)

    def count(self) -> int:
        with self._tx() as conn:
            return int(_one(conn.execute("SELECT count(*) FROM keys"))[0])

    def reservations(self) -> int:
        with self._tx() as conn:
            return int(_one(conn.execute("SELECT count(*) FROM charges"))[0])

    def list(self) -> list[KeyInfo]:
        with self._tx() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM keys ORDER BY created_at, id").fetchall()
        return [_info(row) for row in rows]
