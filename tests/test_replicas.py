"""Several `bgremove serve` processes sharing one database, as behind a load balancer: credits stay
exact, the rate limit holds across them, and a replica that dies gives its reservations back."""

from __future__ import annotations

import io
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from bgremove.server.store import key_id_of, open_store
from tests.serving import ServeProcess, serve_processes

API = "/api/remove-background/"


@pytest.fixture(scope="module")
def small_jpeg(samples) -> bytes:
    image = Image.open(samples / "rocket.jpg")
    image.thumbnail((96, 96))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    return buffer.getvalue()


def schema(postgres) -> str:
    """A URL to an empty schema of its own (the `pg_url` fixture, for a module's replicas)."""
    import secrets

    import psycopg

    name = "t_" + secrets.token_hex(6)
    with psycopg.connect(postgres.url()) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    return postgres.url(options=f"-csearch_path%3D{name}")


# Every test below spends a key of its own, so the replicas (each a model loaded and warmed) are
# started once per store for the module. The rate limit is per key: a key sent fewer requests at
# once than this never meets it.
RATE_LIMIT = 10


@pytest.fixture(scope="module", params=["postgres", "sqlite"])
def replicas(request, tmp_path_factory) -> Iterator[tuple[str, list[ServeProcess]]]:
    """Three `bgremove serve` processes on one store, as behind a load balancer, and the store."""
    if request.param == "sqlite":  # one host: several processes on one file
        location = str(tmp_path_factory.mktemp("keys") / "keys.sqlite3")
    else:
        location = schema(request.getfixturevalue("postgres"))
    # Two images at once each: on 2 cores one inference thread each, so the three replicas do not
    # oversubscribe the cores they share.
    with serve_processes(3, "--db", location, "--workers", "2",
                         "--rate-limit", str(RATE_LIMIT)) as servers:
        yield location, servers


def post_at_once(urls: list[str], count: int, key: str, data: bytes) -> list[httpx.Response]:
    """`count` requests released together, spread round-robin over `urls`."""
    start = threading.Barrier(count)
    responses: list[httpx.Response] = []

    def send(i: int) -> None:
        with httpx.Client(timeout=120) as client:
            start.wait()
            responses.append(client.post(urls[i % len(urls)] + API, headers={"x-api-key": key},
                                          files={"file": ("a.jpg", data)},
                                          data={"mode": "fast", "outputFormat": "png"}))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(responses) == count
    return responses


def test_three_replicas_spend_a_key_exactly(replicas, small_jpeg):
    location, servers = replicas
    with open_store(location) as store:
        key = store.create("shared@example.com", 6)
    responses = post_at_once([s.url for s in servers], RATE_LIMIT, key, small_jpeg)
    assert Counter(r.status_code for r in responses) == {200: 6, 403: 4}
    # Each success was charged once: the balances reported are 5, 4, ... 0, whichever replica.
    remaining = sorted(int(r.headers["x-user-credits"]) for r in responses if r.status_code == 200)
    assert remaining == list(range(6))
    assert all(r.json()["error"].startswith("insufficient credits")
               for r in responses if r.status_code == 403)
    with open_store(location) as store:
        info = store.get(key_id_of(key))
        assert (info.credits, info.used, store.reservations()) == (0, 6, 0)


@pytest.mark.parametrize("replicas", ["postgres"], indirect=True)
def test_rate_limit_holds_across_three_replicas(replicas, small_jpeg):
    # (The SQLite store's log is held to the same bar across handles in test_keystore.py.)
    location, servers = replicas
    with open_store(location) as store:
        key = store.create("eager@example.com", 100)
    responses = post_at_once([s.url for s in servers], 3 * RATE_LIMIT, key, small_jpeg)
    assert Counter(r.status_code for r in responses) == {200: RATE_LIMIT, 429: 2 * RATE_LIMIT}
    for refused in (r for r in responses if r.status_code == 429):
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["x-ratelimit-remaining"] == "0"
        assert "rate limit" in refused.json()["error"]
    with open_store(location) as store:
        assert store.get(key_id_of(key)).credits == 100 - RATE_LIMIT


def test_a_killed_replica_gives_its_reservation_back(pg_url, samples):
    with open_store(pg_url) as store:
        key = store.create("unlucky@example.com", 5)
    big = io.BytesIO()
    Image.open(samples / "astronaut.jpg").resize((2400, 2400)).save(big, "JPEG")
    args = ("--db", pg_url, "--workers", "2", "--replica-timeout", "2")
    with serve_processes(1, *args) as (survivor,):
        doomed = ServeProcess(*args).wait_ready()
        try:
            outcome: list[object] = []

            def send() -> None:
                try:
                    outcome.append(httpx.post(
                        doomed.url + API, headers={"x-api-key": key},
                        files={"file": ("big.jpg", big.getvalue())}, data={"mode": "quality"},
                        timeout=120))
                except httpx.TransportError as exc:
                    outcome.append(exc)

            sender = threading.Thread(target=send)
            sender.start()
            with open_store(pg_url) as store:
                deadline = time.monotonic() + 60
                while store.reservations() == 0:  # the credit is reserved, the work has begun
                    assert time.monotonic() < deadline and not outcome, outcome
                    time.sleep(0.02)
                doomed.proc.send_signal(signal.SIGKILL)
                sender.join(30)
                assert isinstance(outcome[0], httpx.TransportError)  # the client got nothing
                assert store.get(key_id_of(key)).credits == 4  # ... and is charged for now
                # The survivor's sweeper runs every timeout/4 s and returns the credit once the
                # dead replica has been silent for the timeout.
                deadline = time.monotonic() + 20
                while store.reservations():
                    assert time.monotonic() < deadline, "the sweeper did not give it back"
                    time.sleep(0.1)
                info = store.get(key_id_of(key))
                assert (info.credits, info.used) == (5, 0)
        finally:
            doomed.stop()
    assert b"gave back 1 credit(s) reserved by replicas that stopped" in survivor.stderr
