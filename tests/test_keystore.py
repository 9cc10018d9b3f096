"""The key store's contract, run against both implementations: SQLite (a file) and PostgreSQL (a
real server, tests/postgres.py). Keys and hashing, atomic reservations, the sweeper, the sliding
rate log."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from bgremove.errors import UsageError
from bgremove.server.postgres_store import PostgresKeyStore
from bgremove.server.sqlite_store import SqliteKeyStore
from bgremove.server.store import KeyStore, UnknownKeyId, key_id_of, open_store

Opener = Callable[[], KeyStore]


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request, tmp_path) -> Iterator[Opener]:
    """Opens handles on one fresh database, as separate processes would."""
    if request.param == "sqlite":
        location = str(tmp_path / "keys.sqlite3")
    else:
        location = request.getfixturevalue("pg_url")
    opened: list[KeyStore] = []

    def open_one() -> KeyStore:
        opened.append(open_store(location))
        return opened[-1]

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(opener) -> KeyStore:
    return opener()


def run_at_once(count: int, action: Callable[[int], object]) -> list[object]:
    start = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(i: int) -> None:
        start.wait()
        results[i] = action(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_locations_pick_the_implementation(tmp_path, pg_url):
    for location in (tmp_path / "a.sqlite3", str(tmp_path / "b.sqlite3"),
                     f"sqlite:///{tmp_path}/c.sqlite3"):
        with open_store(location) as store:
            assert isinstance(store, SqliteKeyStore)
    assert (tmp_path / "c.sqlite3").is_file()
    with open_store(pg_url) as store:
        assert isinstance(store, PostgresKeyStore)
    with pytest.raises(UsageError, match="unknown database"):
        open_store("mysql://root@localhost/keys")


def test_create_get_list_add_revoke(store):
    key = store.create("  ada@example.com ", 3)
    key_id = key_id_of(key)
    info = store.get(key_id)
    assert (info.email, info.credits, info.used, info.active) == ("ada@example.com", 3, 0, True)
    assert info.created_at.endswith("+00:00") and info.last_used_at is None
    other = store.create("bob@example.com", 0)
    assert [k.id for k in store.list()] == [key_id, key_id_of(other)]
    assert store.count() == 2
    assert store.add_credits(key_id, 5).credits == 8
    revoked = store.revoke(key_id)
    assert not revoked.active and revoked.revoked_at
    assert store.revoke(key_id).revoked_at == revoked.revoked_at  # the first date stays
    for action in (lambda: store.get("0123456789ab"), lambda: store.revoke("0123456789ab"),
                   lambda: store.add_credits("0123456789ab", 1)):
        with pytest.raises(UnknownKeyId):
            action()
    with pytest.raises(UsageError, match="email"):
        store.create("not an email", 1)
    with pytest.raises(UsageError, match="negative"):
        store.create("a@example.com", -1)
    with pytest.raises(UsageError, match="positive"):
        store.add_credits(key_id, 0)


def test_keys_authenticate_by_hash_only(store):
    key = store.create("a@example.com", 1)
    assert store.authenticate(key).email == "a@example.com"
    secret = key.split("_", 2)[2]
    wrong = key[:-1] + ("x" if key[-1] != "x" else "y")
    assert store.authenticate(wrong) is None
    assert store.authenticate("bgr_000000000000_" + secret) is None
    assert store.authenticate("nonsense") is None
    assert secret not in repr(store) and secret not in repr(store.get(key_id_of(key)))


def test_reservations_from_many_handles_never_overdraw(opener):
    handles = [opener(), opener()]  # two handles on one database, as two replicas have
    key_id = key_id_of(handles[0].create("a@example.com", 10))
    results = run_at_once(30, lambda i: handles[i % 2].reserve(key_id, f"req-{i}", f"r{i % 2}"))
    assert sorted(r for r in results if r is not None) == list(range(10))
    assert results.count(None) == 20
    store = handles[0]
    info = store.get(key_id)
    assert (info.credits, info.used) == (0, 10)
    assert info.last_used_at is not None
    assert store.reservations() == 10


def test_settle_keeps_the_credit_release_gives_it_back_once(store):
    key_id = key_id_of(store.create("a@example.com", 2))
    assert store.reserve(key_id, "one", "r") == 1
    assert store.reserve(key_id, "two", "r") == 0
    assert store.reserve(key_id, "three", "r") is None  # nothing left
    assert store.settle("one") is True
    assert store.release("one") is None  # settled: nothing to give back
    assert store.release("two") == 1
    assert store.release("two") is None  # given back once only
    assert store.settle("two") is False
    info = store.get(key_id)
    assert (info.credits, info.used, store.reservations()) == (1, 1, 0)


def test_revoked_key_reserves_nothing(store):
    key_id = key_id_of(store.create("a@example.com", 2))
    store.revoke(key_id)
    assert store.reserve(key_id, "r1", "rep") is None
    assert store.get(key_id).credits == 2


def test_sweeper_gives_back_what_dead_replicas_reserved(opener):
    alive, dead = opener(), opener()
    key_id = key_id_of(alive.create("a@example.com", 5))
    dead.heartbeat("dead")
    alive.heartbeat("alive")
    assert dead.reserve(key_id, "d1", "dead") == 4
    assert dead.reserve(key_id, "d2", "dead") == 3
    assert alive.reserve(key_id, "a1", "alive") == 2
    assert alive.sweep(dead_after=1.0) == 0  # nobody has been silent for a second yet
    time.sleep(1.3)
    alive.heartbeat("alive")  # only "dead" has gone quiet
    assert alive.sweep(dead_after=1.0) == 2
    assert alive.sweep(dead_after=1.0) == 0  # once only
    info = alive.get(key_id)
    assert (info.credits, info.used, alive.reservations()) == (4, 1, 1)
    assert dead.release("d1") is None  # already given back by the sweeper
    assert alive.settle("a1") is True


def test_sweepers_racing_give_back_once(opener):
    handles = [opener() for _ in range(4)]
    key_id = key_id_of(handles[0].create("a@example.com", 10))
    for i in range(6):
        handles[0].reserve(key_id, f"r{i}", "gone")  # a replica that never sent a heartbeat
    time.sleep(1.1)
    given = run_at_once(4, lambda i: handles[i].sweep(dead_after=1.0))
    assert sum(given) == 6
    assert handles[0].get(key_id).credits == 10


def test_a_retiring_replica_returns_what_it_holds(store):
    key_id = key_id_of(store.create("a@example.com", 3))
    store.heartbeat("me")
    store.reserve(key_id, "r1", "me")
    store.reserve(key_id, "r2", "other")
    assert store.retire("me") == 1
    assert (store.get(key_id).credits, store.reservations()) == (2, 1)


class FakeClock:
    """Seconds since the epoch, moved only by the test (whole seconds: exact in a float)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_rate_log_is_a_sliding_window(kind, request, tmp_path):
    clock = FakeClock()  # the rate log's time, instead of the database's own clock
    store: KeyStore = (SqliteKeyStore(tmp_path / "keys.sqlite3", clock=clock) if kind == "sqlite"
                       else PostgresKeyStore(request.getfixturevalue("pg_url"), clock=clock))
    with store:
        key_id = key_id_of(store.create("a@example.com", 1))
        other = key_id_of(store.create("b@example.com", 1))
        first = store.hit(key_id, 3, 2.0)
        assert (first.allowed, first.remaining) == (True, 2)
        clock.now += 1.0
        assert store.hit(key_id, 3, 2.0).allowed
        last = store.hit(key_id, 3, 2.0)
        assert (last.allowed, last.remaining) == (True, 0)
        refused = store.hit(key_id, 3, 2.0)
        assert not refused.allowed and refused.remaining == 0
        assert refused.reset_after == 1.0  # the first hit leaves the window in 1 s
        assert refused.headers()["Retry-After"] == "1"
        assert store.hit(other, 3, 2.0).allowed  # per key
        clock.now += 0.5
        assert not store.hit(key_id, 3, 2.0).allowed  # still inside the window
        clock.now += 0.5
        # A fixed window would have reset; a sliding one frees only the first hit's slot.
        assert store.hit(key_id, 3, 2.0).allowed
        again = store.hit(key_id, 3, 2.0)
        assert not again.allowed and again.reset_after == 1.0
        assert again.headers()["Retry-After"] == "1"


def test_the_rate_log_reads_the_database_clock(store):
    """Without a clock given, the database's own: a hit now is in the window, and one a window
    ago has left it."""
    key_id = key_id_of(store.create("a@example.com", 1))
    assert store.hit(key_id, 1, 60.0).allowed
    refused = store.hit(key_id, 1, 60.0)
    assert not refused.allowed and 0 < refused.reset_after <= 60.0


def test_rate_log_holds_across_handles_at_once(opener):
    handles = [opener(), opener(), opener()]
    key_id = key_id_of(handles[0].create("a@example.com", 1))
    decisions = run_at_once(30, lambda i: handles[i % 3].hit(key_id, 10, 60.0))
    assert sum(d.allowed for d in decisions) == 10
    refused = [d for d in decisions if not d.allowed]
    assert all(int(d.headers()["Retry-After"]) >= 59 for d in refused)


# Each process opens files 0..N-1 of a folder, file i at the same moment as the others.
OPEN_TOGETHER = """
import sys, time
from bgremove.server.sqlite_store import SqliteKeyStore
folder, start, files = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
for i in range(files):
    time.sleep(max(0.0, start + 0.1 * i - time.time()))
    SqliteKeyStore(f"{folder}/{i}.sqlite3").close()
"""


def test_replicas_starting_at_once_on_a_new_sqlite_file_all_open_it(tmp_path):
    # Found with three replicas started together: one in four new files, a replica failed with
    # "database is locked", as SQLite does not wait while a new file is switched to WAL.
    start, files = time.time() + 1.0, 12
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_TOGETHER, str(tmp_path), str(start),
                               str(files)], stderr=subprocess.PIPE, text=True) for _ in range(5)]
    errors = [proc.communicate(timeout=60)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 5, "\n".join(errors)
    assert len(list(tmp_path.glob("*.sqlite3"))) == files


def test_sqlite_file_is_private_and_holds_no_secret(tmp_path):
    with open_store(tmp_path / "keys.sqlite3") as store:
        key = store.create("a@example.com", 1)
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert key.split("_", 2)[2].encode() not in on_disk and b"a@example.com" in on_disk
    assert (tmp_path / "keys.sqlite3").stat().st_mode & 0o077 == 0


def test_postgres_holds_no_secret(pg_url):
    import psycopg

    with open_store(pg_url) as store:
        key = store.create("a@example.com", 1)
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT * FROM keys").fetchall()
    assert key.split("_", 2)[2] not in repr(rows) and "a@example.com" in repr(rows)


def test_a_role_that_may_use_the_tables_but_not_create_any_works(postgres, pg_url):
    # The usual service set-up: an administrator made the tables, the server's role only
    # reads and writes them.
    import secrets

    import psycopg

    with open_store(pg_url) as store:  # as the administrator: the tables are made here
        key = store.create("ops@example.com", 3)
    schema = pg_url.rsplit("%3D", 1)[1]
    role, password = "svc_" + secrets.token_hex(4), secrets.token_hex(8)
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
        conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} "
                     f"TO {role}")
    service = pg_url.replace("postgresql://bgremove@", f"postgresql://{role}:{password}@")
    assert service != pg_url
    with open_store(service) as store:
        assert store.add_credits(key_id_of(key), 2).credits == 5
        assert [info.email for info in store.list()] == ["ops@example.com"]


@pytest.mark.parametrize("url, shown", [
    ("postgresql://u:s3cr3t@db.example/keys", "postgresql://u:***@db.example/keys"),
    ("postgresql://u@db.example/keys?sslmode=require&password=s3cr3t",
     "postgresql://u@db.example/keys?sslmode=require&password=***"),
])
def test_a_password_anywhere_in_the_url_is_found_and_masked(url, shown):
    from bgremove.server.store import redact, url_password

    assert url_password(url) == "s3cr3t" and redact(url) == shown


def test_credits_beyond_what_a_store_holds_exactly_are_a_mistake(tmp_path):
    with open_store(tmp_path / "keys.sqlite3") as store:
        with pytest.raises(UsageError, match="at most"):
            store.create("a@example.com", 10**19)
        key = store.create("a@example.com", 1)
        with pytest.raises(UsageError, match="at most"):
            store.add_credits(key_id_of(key), 2**63)
        assert store.get(key_id_of(key)).credits == 1
