"""What an HTTP/2 peer may make the server do per second before it is cut off.

Frames that cost the server work but bring no request are counted in one-second
windows (the connection's coarse clock); past a bound the connection ends with
GOAWAY ENHANCE_YOUR_CALM. The bounds are far above what real clients send: a
browser sends a handful of SETTINGS and PINGs per connection, and cancels a
few streams when the user navigates away.
"""

from __future__ import annotations

SETTINGS_PER_SECOND = 100
PINGS_PER_SECOND = 100
EMPTY_DATA_PER_SECOND = 200


class FloodLimits:
    __slots__ = ("_counts", "_second", "resets_per_second")

    def __init__(self, max_concurrent_streams: int) -> None:
        # Rapid reset (CVE-2023-44487): streams cancelled before their response, twice the
        # streams a client may have open, and at least 200.
        self.resets_per_second = max(200, 2 * max_concurrent_streams)
        self._second = 0.0
        self._counts = [0, 0, 0, 0]  # resets, settings, pings, empty data

    def _count(self, now: float, which: int, bound: int) -> bool:
        if now - self._second >= 1.0:
            self._second = now
            self._counts = [0, 0, 0, 0]
        self._counts[which] += 1
        return self._counts[which] > bound

    def reset(self, now: float) -> bool:
        """A stream reset before its response was complete; True: too many."""
        return self._count(now, 0, self.resets_per_second)

    def settings(self, now: float) -> bool:
        return self._count(now, 1, SETTINGS_PER_SECOND)

    def ping(self, now: float) -> bool:
        return self._count(now, 2, PINGS_PER_SECOND)

    def empty_data(self, now: float) -> bool:
        return self._count(now, 3, EMPTY_DATA_PER_SECOND)
