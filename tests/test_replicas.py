"""Several `bgremove serve` processes sharing one database, as behind a load balancer: credits stay
exact, the rate limit holds across them, and a replica that dies gives its reservations back."""

from __future__ import annotations

import io
import signal
import threading
import time
from collections import Counter

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


@pytest.fixture(params=["postgres", "sqlite"])
def location(request, tmp_path) -> str:
    if request.param == "sqlite":  # one host: several processes on one file
        return str(tmp_path / "keys.sqlite3")
    return request.getfixturevalue("pg_url")


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


def test_three_replicas_spend_a_20_credit_key_exactly(location, small_jpeg):
    with open_store(location) as store:
        key = store.create("shared@example.com", 20)
    with serve_processes(3, "--db", location, "--workers", "1") as servers:
        responses = post_at_once([s.url for s in servers], 50, key, small_jpeg)
    assert Counter(r.status_code for r in responses) == {200: 20, 403: 30}
    # Each success was charged once: the balances reported are 19, 18, ... 0, whichever replica.
    remaining = sorted(int(r.headers["x-user-credits"]) for r in responses if r.status_code == 200)
    assert remaining == list(range(20))
    assert all(r.json()["error"].startswith("insufficient credits")
               for r in responses if r.status_code == 403)
    with open_store(location) as store:
        info = store.get(key_id_of(key))
        assert (info.credits, info.used, store.reservations()) == (0, 20, 0)


def test_rate_limit_holds_across_three_replicas(pg_url, small_jpeg):
    # (The SQLite store's log is held to the same bar across handles in test_keystore.py.)
    with open_store(pg_url) as store:
        key = store.create("eager@example.com", 100)
    with serve_processes(3, "--db", pg_url, "--workers", "1", "--rate-limit", "10") as servers:
        responses = post_at_once([s.url for s in servers], 30, key, small_jpeg)
    assert Counter(r.status_code for r in responses) == {200: 10, 429: 20}
    for refused in (r for r in responses if r.status_code == 429):
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["x-ratelimit-remaining"] == "0"
        assert "rate limit" in refused.json()["error"]
    with open_store(pg_url) as store:
        assert store.get(key_id_of(key)).credits == 90


def test_a_killed_replica_gives_its_reservation_back(pg_url, samples):
    with open_store(pg_url) as store:
        key = store.create("unlucky@example.com", 5)
    big = io.BytesIO()
    Image.open(samples / "astronaut.jpg").resize((2400, 2400)).save(big, "JPEG")
    args = ("--db", pg_url, "--workers", "1", "--replica-timeout", "2")
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
