"""The sliding-window rate limiter: never more than the cap in any window, from any thread."""

from __future__ import annotations

import threading
import time

import pytest

from bgremove.ratelimit import Pacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cap_then_wait_until_the_oldest_start_leaves_the_window():
    clock = FakeClock()
    limiter = Pacer(3, 10.0, slack=0.0, clock=clock)
    assert limiter.reserve() == 0.0
    clock.now += 1.0
    assert [limiter.reserve(), limiter.reserve()] == [0.0, 0.0]
    assert limiter.reserve() == pytest.approx(9.0)
    clock.now += 4.0
    assert limiter.reserve() == pytest.approx(5.0)
    clock.now += 5.0
    assert limiter.reserve() == 0.0  # the first start has left the window: one slot free
    assert limiter.reserve() == pytest.approx(1.0)  # the other two leave a second later


def test_window_slides_rather_than_resetting():
    clock = FakeClock()
    limiter = Pacer(2, 10.0, slack=0.0, clock=clock)
    limiter.reserve()
    clock.now += 9.0
    limiter.reserve()
    clock.now += 1.5  # a fixed window would have reset here and allowed two more
    assert limiter.reserve() == 0.0
    assert limiter.reserve() == pytest.approx(8.5)  # when the start at +9 s leaves


def test_default_slack_widens_the_window():
    clock = FakeClock()
    limiter = Pacer(1, 60.0, clock=clock)
    limiter.reserve()
    assert limiter.reserve() == pytest.approx(61.2)  # 2% of a minute
    short = Pacer(1, 3.0, clock=clock)
    short.reserve()
    assert short.reserve() == pytest.approx(3.5)  # at least half a second


def test_defer_holds_everyone_off():
    clock = FakeClock()
    limiter = Pacer(100, 60.0, clock=clock)
    limiter.defer(5.0)
    assert limiter.reserve() == pytest.approx(5.0)
    clock.now += 5.0
    assert limiter.reserve() == 0.0


def test_threads_never_exceed_the_cap_in_any_window():
    cap, window = 5, 0.3
    limiter = Pacer(cap, window, slack=0.0)
    starts: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(4):
            limiter.acquire()
            with lock:
                starts.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(5)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    starts.sort()
    assert len(starts) == 20
    # any cap+1 consecutive starts span at least a full window
    assert min(b - a for a, b in zip(starts, starts[cap:], strict=False)) >= window - 1e-3
    # and the limiter does not dawdle: 20 starts at 5 per window take just over 3 windows
    assert time.monotonic() - began < 3 * window + 0.25


def test_acquire_gives_up_when_cancelled():
    limiter = Pacer(1, 30.0)
    assert limiter.acquire()
    cancel = threading.Event()
    threading.Timer(0.05, cancel.set).start()
    began = time.monotonic()
    assert limiter.acquire(cancel) is False
    assert time.monotonic() - began < 5
