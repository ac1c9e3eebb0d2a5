"""Rate limiting for reports: a burst, then a steady trickle."""

from __future__ import annotations

import time


class TokenBucket:
    """`burst` reports at once, then one more every `interval` seconds. Not thread-safe:
    each user takes from its own bucket on one thread."""

    __slots__ = ("_burst", "_interval", "_stamp", "_tokens")

    def __init__(self, burst: int, interval: float) -> None:
        self._burst = float(burst)
        self._interval = interval
        self._tokens = float(burst)
        self._stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        if self._interval > 0:
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) / self._interval)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
