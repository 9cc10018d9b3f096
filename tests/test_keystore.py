"""The key store and the rate limiter on their own: hashing, atomic charging, the sliding window."""

from __future__ import annotations

import threading

from bgremove.server.ratelimit import RateLimiter
from bgremove.server.store import KeyStore


def test_only_a_hash_of_the_key_is_stored(tmp_path):
    store = KeyStore(tmp_path / "keys.sqlite3")
    key = store.create("a@example.com", 1)
    secret = key.split("_", 2)[2]
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert secret.encode() not in on_disk and b"a@example.com" in on_disk
    assert store.authenticate(key).email == "a@example.com"
    assert store.authenticate(key[:-1] + ("x" if key[-1] != "x" else "y")) is None
    assert (tmp_path / "keys.sqlite3").stat().st_mode & 0o077 == 0  # private to its owner


def test_charging_from_many_threads_never_overdraws(tmp_path):
    store = KeyStore(tmp_path / "keys.sqlite3")
    key_id = store.create("a@example.com", 10)[4:16]
    other = KeyStore(tmp_path / "keys.sqlite3")  # a second handle, as another process would have
    start = threading.Barrier(30)
    results: list[int | None] = []

    def charge(handle: KeyStore) -> None:
        start.wait()
        results.append(handle.charge(key_id))

    threads = [threading.Thread(target=charge, args=(store if i % 2 else other,))
               for i in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r for r in results if r is not None) == list(range(10))
    assert results.count(None) == 20
    assert store.get(key_id).credits == 0
    assert store.refund(key_id) == 1 and store.get(key_id).used == 9


def test_sliding_window_has_no_burst_at_a_boundary():
    now = [0.0]
    limiter = RateLimiter(3, window=10.0, clock=lambda: now[0])
    for t in (0.0, 4.0, 9.0):
        now[0] = t
        assert limiter.hit("k").allowed
    now[0] = 9.5
    refused = limiter.hit("k")
    assert not refused.allowed and refused.headers()["Retry-After"] == "1"  # 0 leaves at 10
    assert limiter.hit("other").allowed  # per key
    now[0] = 10.0  # a fixed window would now allow three more; only the slot of t=0 is free
    assert limiter.hit("k").allowed
    assert not limiter.hit("k").allowed
    assert limiter.hit("k").headers()["Retry-After"] == "4"  # t=4 leaves at 14
