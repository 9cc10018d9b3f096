"""A per-key sliding-window rate limit: at most `limit` requests in any `window` seconds.

A sliding log rather than fixed windows, so a client cannot send twice the limit across a window
boundary. Each key keeps at most `limit` timestamps; refused requests are not recorded, so a client
that backs off for Retry-After seconds is let through again.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    # Seconds until the oldest request in the window expires, freeing a slot.
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


class RateLimiter:
    """`limit` requests per `window` seconds for each key; a limit of 0 lets everything through."""

    def __init__(self, limit: int, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        if limit < 0 or window <= 0:
            raise ValueError("the rate limit must be >= 0 and its window > 0 seconds")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def hit(self, key: str) -> Decision:
        """Count one request for `key`, unless it is over the limit."""
        now = self._clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            allowed = len(hits) < self.limit
            if allowed:
                hits.append(now)
            reset_after = hits[0] + self.window - now if hits else 0.0
            return Decision(allowed, self.limit, self.limit - len(hits), reset_after)
