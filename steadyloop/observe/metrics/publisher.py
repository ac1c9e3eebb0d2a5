"""The worker's publisher: a thread that copies its ProcessStats into its StatsSlot.

Twice a second it takes a snapshot (which reads plain attributes and copies
deques: the loop is never asked anything) and writes it into the shared slot;
once a second it also adds a point to the lag chart. It keeps running while
the loop is blocked, so the supervisor sees a block *while it lasts*. On stop
it publishes one last time: a worker that exits gracefully loses no count.
"""

from __future__ import annotations

import logging
import threading
import time

from steadyloop.observe.metrics.process import ProcessStats
from steadyloop.observe.metrics.shm import StatsSlot

logger = logging.getLogger("steadyloop.error")

PUBLISH_INTERVAL = 0.5  # seconds
TICK_INTERVAL = 1.0  # seconds between lag chart points


class Publisher:
    def __init__(self, stats: ProcessStats, slot: StatsSlot | None) -> None:
        self.stats = stats
        self.slot = slot  # None: nothing to publish to (one process); only the chart ticks
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="steadyloop-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and publish one last snapshot. Idempotent."""
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join()
        self._thread = None
        self._publish()

    def _run(self) -> None:
        next_tick = time.monotonic() + TICK_INTERVAL
        try:
            self._publish()  # at once: a fresh worker shows up in the next scrape
            while not self._stopping.wait(PUBLISH_INTERVAL):
                if time.monotonic() >= next_tick:
                    next_tick += TICK_INTERVAL
                    self.stats.tick()
                self._publish()
        except Exception:  # a bug here must not pass silently, nor take the worker down
            logger.exception("metrics publisher failed; this worker's metrics stop here")

    def _publish(self) -> None:
        if self.slot is None:
            return
        if not self.slot.publish(self.stats.snapshot()) and not self._warned:
            self._warned = True
            logger.warning("metrics snapshot too large for its shared slot: not published")
