"""Event-loop lag: how late the loop ran its own heartbeat timer, as a histogram.

The loop thread records one value per heartbeat (a few dozen a second), so
`record` is a bisect and four attribute writes. Readers on other threads call
`snapshot()`; they may see a count one ahead of the sum, which is harmless for
metrics and cheaper than a lock the loop would have to take.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TypedDict

# Upper bounds in seconds (Prometheus "le"). Below 1 ms is noise; above 10 s the
# supervisor's --worker-timeout or the dump-after backstop has the final word.
DEFAULT_BOUNDS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class LagSnapshot(TypedDict):
    """Cumulative buckets, Prometheus style: (upper bound, count <= bound); the last is +inf."""

    buckets: list[tuple[float, int]]
    count: int
    sum: float
    max: float


class LagHistogram:
    """Counts of loop lag per bucket, plus count, sum and max."""

    __slots__ = ("_bounds", "_counts", "count", "max", "sum", "window_max")

    def __init__(self, bounds: tuple[float, ...] = DEFAULT_BOUNDS) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds or bounds[0] <= 0:
            raise ValueError("bounds must be positive and strictly increasing")
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # the last slot is +inf
        self.count = 0
        self.sum = 0.0
        self.max = 0.0
        self.window_max = 0.0  # the largest value since the last take_window_max()

    def record(self, lag: float) -> None:
        """Add one observation (seconds). Negative values (a timer fired early) count as 0."""
        if lag < 0.0:
            lag = 0.0
        self._counts[bisect_left(self._bounds, lag)] += 1
        self.count += 1
        self.sum += lag
        if lag > self.window_max:
            self.window_max = lag
            if lag > self.max:
                self.max = lag

    def take_window_max(self) -> float:
        """The largest value since the last call, and start a new window (a chart's point).

        Called from another thread than `record`: a value recorded between the read and
        the reset is lost to the chart (never to the buckets), which a chart can bear.
        """
        value, self.window_max = self.window_max, 0.0
        return value

    def snapshot(self) -> LagSnapshot:
        counts = list(self._counts)  # one copy, so the cumulative sums agree with each other
        buckets: list[tuple[float, int]] = []
        running = 0
        for bound, n in zip((*self._bounds, float("inf")), counts, strict=True):
            running += n
            buckets.append((bound, running))
        return {"buckets": buckets, "count": running, "sum": self.sum, "max": self.max}
