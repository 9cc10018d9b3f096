"""API keys, their credits and their rate limit: the interface, and where a database is opened.

Two implementations share this interface and one contract test suite: `SqliteKeyStore` (one file,
for one host: `bgremove serve` and the CLI on the same machine) and `PostgresKeyStore` (any number
of replicas on any number of hosts sharing one PostgreSQL). Everything that must hold across
processes lives in the database, never in a replica's memory:

- Credits are *reserved* before the work (one conditional UPDATE, so a balance never goes below
  zero however many requests race), recorded in a charges table under the request id, and then
  *settled* when the image is sent or *released* (given back) when the work fails. A replica that
  dies between the two leaves its reservation behind; the sweeper of any live replica gives it
  back once that replica has stopped sending heartbeats.
- The per-key rate limit is a sliding log in the database, stamped by the database's clock: at
  most `limit` requests in any `window` seconds, summed over every replica. No token bucket: it
  would let a burst exceed "N in any window", the promise the CLI paces itself to.

A key looks like `bgr_<id>_<secret>`. The id is not secret: it names the key in listings, logs and
management commands. Only the SHA-256 of the whole key is stored (the secret has 256 bits of
entropy, so a plain hash is as strong as a slow one), and it is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from bgremove.errors import Option, UsageError
from bgremove.errors import StoreError as StoreError  # the store's errors, by their old address
from bgremove.errors import StoreMissing as StoreMissing
from bgremove.errors import StoreUnavailable as StoreUnavailable
from bgremove.errors import UnknownKeyId as UnknownKeyId
from bgremove.server.location import DB_ENV as DB_ENV  # by their old address too
from bgremove.server.location import db_from_env as db_from_env
from bgremove.server.location import default_db_path as default_db_path
from bgremove.server.location import default_location

KEY_PREFIX = "bgr_"
_ID_HEX = 12  # 48 bits: collisions are re-drawn, and ids are not secret anyway
_KEY_RE = re.compile(rf"^{KEY_PREFIX}([0-9a-f]{{{_ID_HEX}}})_[A-Za-z0-9_-]{{43}}$")
# Emails travel back in the x-user-email header, so they must be plain printable ASCII.
_EMAIL_RE = re.compile(r"^[!-~]+@[!-~]+$")
POSTGRES_SCHEMES = ("postgresql", "postgres")
# A bound far above any real balance that both stores hold exactly (SQLite and PostgreSQL
# integers are 64-bit; a sum near that limit would overflow or turn into a float).
MAX_CREDITS = 10**12


# The store's errors are part of the one tree in errors.py (imported above).


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


@dataclass(frozen=True)
class RateDecision:
    """One request counted against a key's rate limit (or refused by it)."""

    allowed: bool
    limit: int
    remaining: int
    # Seconds until the oldest request in the window leaves it, freeing a slot.
    reset_after: float

    def headers(self) -> dict[str, str]:
        """The rate-limit headers clients expect (and Retry-After when refused)."""
        reset = str(max(1, math.ceil(self.reset_after))) if self.reset_after > 0 else "0"
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": reset,
        }
        if not self.allowed:
            headers["Retry-After"] = reset
        return headers


def key_id_of(key: str) -> str | None:
    """The id part of a key, or None if it is not shaped like one of ours."""
    match = _KEY_RE.match(key)
    return match.group(1) if match else None


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def scheme_of(location: str) -> str:
    """`postgresql` of `postgresql://...` ('' for a path), without parsing the rest, which
    may be malformed."""
    scheme, sep, _ = location.partition("://")
    return scheme.lower() if sep else ""


def is_postgres(location: str) -> bool:
    return scheme_of(location) in POSTGRES_SCHEMES


# The password's places in a URL: user:PASSWORD@host, and libpq's ?password=PASSWORD.
_URL_PASSWORDS = re.compile(r"(?<=://)([^/@?#]*?):([^/@?#]*)(?=@)|([?&]password=)([^&#]*)")


def url_password(location: str) -> str | None:
    """The password written into a PostgreSQL URL, if any (to warn about it, and to mask it)."""
    if not is_postgres(location):
        return None
    for match in _URL_PASSWORDS.finditer(location):
        password = match.group(2) if match.group(2) is not None else match.group(4)
        if password:
            return password
    return None


def redact(location: str) -> str:
    """The location as it may be shown: a URL's password replaced by ***."""
    if not is_postgres(location):
        return location
    return _URL_PASSWORDS.sub(
        lambda m: f"{m.group(1)}:***" if m.group(3) is None else f"{m.group(3)}***", location)


def open_store(location: str | os.PathLike[str] | None = None, *,
               pool_size: int = 10, create: bool = True) -> KeyStore:
    """The store at `location`: a path or `sqlite:///PATH` (SQLite), or `postgresql://...`.

    `None` means `$BGREMOVE_DB`, else the default SQLite file. A PostgreSQL password comes from
    PGPASSWORD or a pgpass file, as libpq finds them; one in the URL works but is visible to
    every user of the machine when the URL is on a command line. `pool_size` caps PostgreSQL
    connections per process. With `create` false, a SQLite file that does not exist is a
    StoreMissing rather than a new, empty database (and folders) made where a path was mistyped.
    """
    text = os.fspath(location) if location is not None else default_location()
    scheme = scheme_of(text)
    if scheme in POSTGRES_SCHEMES:
        from bgremove.extras import needs_extra

        with needs_extra("postgres", ("psycopg", "psycopg_pool"), "a postgresql:// database"):
            from bgremove.server.postgres_store import PostgresKeyStore
        return PostgresKeyStore(text, pool_size=pool_size)
    if scheme == "sqlite":
        # SQLAlchemy's spelling: sqlite:///relative/path, sqlite:////absolute/path
        if not text.startswith("sqlite:///") or text == "sqlite:///":
            raise UsageError(f"not a SQLite URL: {text!r} (use sqlite:///PATH)")
        text = text[len("sqlite:///"):]
    elif scheme:
        raise UsageError(f"unknown database {redact(text)!r}: use a file path, sqlite:///PATH "
                         "or postgresql://USER@HOST/DBNAME")
    if not create and not Path(text).exists():
        raise StoreMissing(f"no key database at {text} (`bgremove keys create` makes one; ",
                           Option("db"), " or BGREMOVE_DB names another)", path=text)
    from bgremove.server.sqlite_store import SqliteKeyStore

    return SqliteKeyStore(text)


class KeyStore(ABC):
    """Keys, credits, reservations and rate-limit logs. Every method may be called from any
    thread, and from any number of processes sharing the database."""

    #: Where the data is, fit to show (no password).
    location: str

    def create(self, email: str, credits: int) -> str:
        """Add a key for `email` with `credits`; return the key itself (it is not stored)."""
        email = email.strip()
        if not _EMAIL_RE.match(email) or len(email) > 254:
            raise UsageError(f"not an email address: {email!r}")
        if credits < 0:
            raise UsageError("credits cannot be negative")
        if credits > MAX_CREDITS:
            raise UsageError(f"at most {MAX_CREDITS:,} credits on a key")
        while True:
            key_id = secrets.token_hex(_ID_HEX // 2)
            key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
            if self._insert_key(key_id, hash_key(key), email, credits):
                return key

    def authenticate(self, key: str) -> KeyInfo | None:
        """The key's record if `key` is one of ours (revoked or not), else None."""
        key_id = key_id_of(key)
        if key_id is None:
            return None
        found = self._key_with_hash(key_id)
        if found is None or not hmac.compare_digest(found[0], hash_key(key)):
            return None
        return found[1]

    @abstractmethod
    def _insert_key(self, key_id: str, key_hash: bytes, email: str, credits: int) -> bool:
        """Insert a key; False if the id is taken."""

    @abstractmethod
    def _key_with_hash(self, key_id: str) -> tuple[bytes, KeyInfo] | None: ...

    @abstractmethod
    def get(self, key_id: str) -> KeyInfo:
        """The key's record; UnknownKeyId if there is none."""

    @abstractmethod
    def reserve(self, key_id: str, request_id: str, replica: str) -> int | None:
        """Take one credit from an active key for `request_id`, held by `replica`; return the
        credits left, or None if there were none."""

    @abstractmethod
    def settle(self, request_id: str) -> bool:
        """The work was delivered: the reservation becomes a charge. False if the sweeper had
        already given it back (its replica was presumed dead)."""

    @abstractmethod
    def release(self, request_id: str) -> int | None:
        """The work failed: give the reserved credit back; the key's credits after, or None if
        there was no such reservation (already settled or given back)."""

    @abstractmethod
    def heartbeat(self, replica: str) -> None:
        """`replica` is alive (replicas call this every few seconds)."""

    @abstractmethod
    def sweep(self, dead_after: float) -> int:
        """Give back the reservations of replicas silent for `dead_after` seconds, and made
        longer ago than that; return how many."""

    @abstractmethod
    def retire(self, replica: str) -> int:
        """`replica` stops: give back whatever it still holds and forget it; return how many."""

    @abstractmethod
    def hit(self, key_id: str, limit: int, window: float) -> RateDecision:
        """Count one request for `key_id` unless `limit` requests already fell within the last
        `window` seconds (by the database's clock); refused requests are not counted, so a
        client that waits Retry-After seconds gets through."""

    @abstractmethod
    def add_credits(self, key_id: str, credits: int) -> KeyInfo: ...

    @abstractmethod
    def revoke(self, key_id: str) -> KeyInfo:
        """Refuse the key from now on. Its record stays, for the books."""

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def reservations(self) -> int:
        """Credits reserved and not yet settled or given back (for tests and operators)."""

    def close(self) -> None:  # noqa: B027 - a no-op where there are no connections to keep
        """Release connections."""

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"

    # Last, so that the name `list` means the builtin everywhere above.
    @abstractmethod
    def list(self) -> list[KeyInfo]:
        """Every key, oldest first, without secrets."""


def check_credits(credits: int) -> None:
    if credits <= 0:
        raise UsageError("the number of credits to add must be positive")
    if credits > MAX_CREDITS:
        raise UsageError(f"at most {MAX_CREDITS:,} credits on a key")


def unknown(key_id: str) -> UnknownKeyId:
    return UnknownKeyId(f"no key with id {key_id!r} (see `bgremove keys list`)")
