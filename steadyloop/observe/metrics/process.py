"""ProcessStats: everything one serving process knows about itself, as one snapshot.

The server fills in its sources when it starts (the watchdog, the log
pipeline, a function that counts connections by state); the request path
bumps `requests`. `snapshot()` reads them all from any thread without taking
anything the loop holds: plain attributes, copies of deques, the pools'
short locks. `tick()`, about once a second, adds a point to the loop-lag
chart. The snapshot is JSON-able; its shape:

    counters  only ever grow: requests, durations, lag, blocks, pool waits, lost logs
    gauges    now: connections by state, app tasks, pool busy/queued, log queue depth
    live      for the status page: the lag chart, recent waits, a block going on now
    recent_blocks  the last blocks, with request, location and sampled stacks
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from steadyloop.observe import threadpool
from steadyloop.observe.lag import LagSnapshot
from steadyloop.observe.metrics.requests import RequestCounters, histogram
from steadyloop.observe.watchdog import Watchdog

HISTORY_POINTS = 300  # one a second: the status page's lag chart covers five minutes


class LogCounts(Protocol):
    """What the stats need of the log pipeline (steadyloop.observe.logsetup.LogPipeline)."""

    def dropped(self) -> dict[str, int]: ...
    def lost(self) -> int: ...
    def pending(self) -> int: ...


class ProcessStats:
    """One process's numbers. Created by the server; `current_stats()` finds it."""

    def __init__(self) -> None:
        self.requests = RequestCounters()
        self.watchdog: Watchdog | None = None
        self.log: LogCounts | None = None
        self.connections: Callable[[], dict[str, int]] | None = None
        self.tasks: Callable[[], int] | None = None
        self.pid = os.getpid()
        self.started = time.time()
        self._history: collections.deque[tuple[float, float]] = collections.deque(maxlen=HISTORY_POINTS)
        self._history_lock = threading.Lock()  # tick() may come from two threads at shutdown

    def tick(self) -> None:
        """Add a point to the lag chart: the worst lag since the last tick, or the block now."""
        watchdog = self.watchdog
        if watchdog is None:
            return
        worst = watchdog.lag.take_window_max()
        now = watchdog.blocked_now()
        if now is not None:
            worst = max(worst, now[0])
        with self._history_lock:
            self._history.append((round(time.time(), 1), round(worst, 4)))

    def snapshot(self) -> dict[str, Any]:
        requests = self.requests.snapshot()
        counters: dict[str, Any] = {**requests, "pool_waits": {}, "log": {"dropped": {}, "lost": 0}}
        gauges: dict[str, Any] = {"connections": {}, "tasks": 0, "pools": {}, "log_queue": 0}
        live: dict[str, Any] = {"lag_history": [], "blocked_now": None, "waits": {}}
        recent_blocks: list[dict[str, Any]] = []
        watchdog = self.watchdog
        if watchdog is not None:
            counters["lag"] = _lag(watchdog.lag.snapshot())
            counters["blocks"] = {
                "count": watchdog.blocks,
                "seconds": watchdog.blocked_seconds,
                "locations": {k: list(v) for k, v in dict(watchdog.block_locations).items()},
            }
            recent_blocks = list(watchdog.recent_blocks)
            now = watchdog.blocked_now()
            if now is not None:
                live["blocked_now"] = {"seconds": now[0], "location": now[1]}
            gauges["lag_max"] = watchdog.lag.max
        with self._history_lock:
            live["lag_history"] = list(self._history)
        for name, pool in threadpool.snapshot_all().items():
            counters["pool_waits"][name] = _lag(pool["wait_histogram"])
            gauges["pools"][name] = {"size": pool["size"], "busy": pool["busy"], "queued": pool["queued"]}
            live["waits"][name] = pool["recent_waits"]
        if self.log is not None:
            counters["log"] = {"dropped": self.log.dropped(), "lost": self.log.lost()}
            gauges["log_queue"] = self.log.pending()
        if self.connections is not None:
            gauges["connections"] = self.connections()
        if self.tasks is not None:
            gauges["tasks"] = self.tasks()
        return {
            "pid": self.pid,
            "started": self.started,
            "time": time.time(),
            "counters": counters,
            "gauges": gauges,
            "live": live,
            "recent_blocks": recent_blocks,  # last: the publisher re-uses its encoding
        }


def _lag(snap: LagSnapshot) -> dict[str, Any]:
    """A LagHistogram snapshot (cumulative, +inf last) in the published form."""
    bounds = [bound for bound, _ in snap["buckets"][:-1]]
    counts: list[int] = []
    previous = 0
    for _, cumulative in snap["buckets"]:
        counts.append(cumulative - previous)
        previous = cumulative
    return histogram(bounds, counts, snap["sum"])


_current: ProcessStats | None = None


def install(stats: ProcessStats) -> None:
    """Make `stats` this process's (the server, at start)."""
    global _current
    _current = stats


def uninstall(stats: ProcessStats) -> None:
    """The server that installed `stats` has stopped (a later one may have replaced it)."""
    global _current
    if _current is stats:
        _current = None


def current_stats() -> dict[str, Any] | None:
    """This process's numbers now (see the module doc for the shape), or None when no
    server runs here. Safe from any thread; never waits for the event loop."""
    stats = _current
    return None if stats is None else stats.snapshot()
