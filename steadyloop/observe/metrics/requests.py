"""Request counters: the one call the request path makes, kept to a few list stores.

`RequestCounters.request_done(status, protocol, seconds)` runs on the loop for
every finished response: no lock (only the loop thread writes), no allocation
beyond the integers themselves, one index per status and protocol (the classes
are worked out when a snapshot is taken), a bisect for the duration bucket. A publisher
thread copies the lists now and then; a copy taken mid-update is off by one
request at most, and the next one is right.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "other")
# The ASGI scope's http_version values, and "websocket"; anything else is "other".
PROTOCOLS = ("HTTP/1.0", "HTTP/1.1", "HTTP/2", "websocket", "other")
_PROTOCOL_INDEX = {"1.0": 0, "1.1": 1, "2": 2, "2.0": 2, "websocket": 3}
_OTHER_PROTOCOL = len(PROTOCOLS) - 1
_STATUSES = 600

# Request duration buckets (seconds): Prometheus's defaults, with two finer ones
# below 5 ms, where most responses of a fast server land.
DURATION_BOUNDS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class RequestCounters:
    """Finished requests by status class and protocol, and their duration histogram."""

    __slots__ = ("buckets", "counts", "seconds")

    def __init__(self) -> None:
        # One slot per (status, protocol): the hook indexes without working out the class.
        # Statuses are 100..999 (checked where the response head is built); 600 and up
        # share the last slot.
        self.counts = [0] * (_STATUSES * len(PROTOCOLS) + 1)
        self.buckets = [0] * (len(DURATION_BOUNDS) + 1)  # the last is +inf
        self.seconds = 0.0

    def request_done(self, status: int, protocol: str, seconds: float) -> None:
        """A response is complete (the loop thread only). `protocol`: "1.1", "2", "websocket"."""
        try:
            self.counts[status * 5 + _PROTOCOL_INDEX.get(protocol, _OTHER_PROTOCOL)] += 1
        except IndexError:
            self.counts[-1] += 1
        self.buckets[bisect_left(DURATION_BOUNDS, seconds)] += 1
        self.seconds += seconds

    def snapshot(self) -> dict[str, Any]:
        """{"requests": {protocol: {status class: n}}, "duration": histogram}, nonzero only."""
        counts = list(self.counts)
        requests: dict[str, dict[str, int]] = {}
        for i, n in enumerate(counts):
            if n:
                status, protocol = divmod(i, len(PROTOCOLS))
                name = PROTOCOLS[protocol] if i < len(counts) - 1 else "other"
                status_class = STATUS_CLASSES[status // 100 - 1] if 100 <= status < _STATUSES else "other"
                by_class = requests.setdefault(name, {})
                by_class[status_class] = by_class.get(status_class, 0) + n
        return {
            "requests": requests,
            "duration": histogram(DURATION_BOUNDS, list(self.buckets), self.seconds),
        }


def histogram(bounds: tuple[float, ...] | list[float], counts: list[int], total: float) -> dict[str, Any]:
    """A histogram as published: upper bounds (no +inf), cumulative counts (+inf last), sum."""
    cumulative: list[int] = []
    running = 0
    for n in counts:
        running += n
        cumulative.append(running)
    return {"le": list(bounds), "cum": cumulative, "sum": total}
