"""The client's pacer: a thread-safe sliding window, at most `cap` starts in any `window` seconds.

The API allows 100 requests a minute. A worker pool that asks this pacer before every request
(retries included) never exceeds that, so a long batch runs at the cap without a single 429, and a
short batch (under the cap) goes as fast as the server answers.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


def default_slack(window: float) -> float:
    """2% of the window, and at least half a second."""
    return max(0.02 * window, 0.5)


class Pacer:
    """Grant at most `cap` slots in any `window` seconds, to any number of threads.

    `slack` (seconds) widens our window beyond the server's. We stamp a request when we start it;
    the server counts it when it gets to it, a little later and not always equally later (upload
    time, its own queue). Spacing our window slightly wider absorbs that jitter, so the server
    never sees cap+1 in its window.
    """

    def __init__(
        self,
        cap: int,
        window: float = 60.0,
        *,
        slack: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if cap < 1:
            raise ValueError("the rate limit must be at least 1 request")
        if window <= 0:
            raise ValueError("the rate window must be longer than 0 seconds")
        self.cap = cap
        self.window = window + (default_slack(window) if slack is None else slack)
        self._clock = clock
        self._starts: deque[float] = deque()
        self._not_before = 0.0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take a slot now and return 0, or return how many seconds to wait before asking again."""
        with self._lock:
            now = self._clock()
            if now < self._not_before:
                return self._not_before - now
            horizon = now - self.window
            while self._starts and self._starts[0] <= horizon:
                self._starts.popleft()
            if len(self._starts) < self.cap:
                self._starts.append(now)
                return 0.0
            return self._starts[0] - horizon

    def acquire(self, cancel: threading.Event | None = None) -> bool:
        """Block until a slot is ours (True), or until `cancel` is set (False)."""
        while True:
            wait = self.reserve()
            if wait <= 0:
                return True
            if cancel is None:
                time.sleep(wait)
            elif cancel.wait(wait):
                return False

    def defer(self, seconds: float) -> None:
        """Grant nothing for `seconds` (the server said Retry-After): every thread holds off."""
        with self._lock:
            self._not_before = max(self._not_before, self._clock() + seconds)
