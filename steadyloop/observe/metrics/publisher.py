"""The worker's publisher: a thread that copies its ProcessStats into its StatsSlot.

Once a second it adds a point to the lag chart, takes a snapshot (which reads
plain attributes and copies deques: the loop is never asked anything) and
writes it into the shared slot. It keeps running while the loop is blocked, so
the supervisor sees a block *while it lasts*. On stop it publishes one last
time: a worker that exits gracefully loses no count; one killed loses at most
the last second's.

Encoding holds the GIL, so it is kept short: the recent blocks (their stacks
are most of the document) are encoded again only when a block was added.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from steadyloop.observe.metrics.process import ProcessStats
from steadyloop.observe.metrics.shm import StatsSlot

logger = logging.getLogger("steadyloop.error")

PUBLISH_INTERVAL = 1.0  # seconds; also the lag chart's step
_COMPACT = (",", ":")


class Publisher:
    def __init__(self, stats: ProcessStats, slot: StatsSlot | None) -> None:
        self.stats = stats
        self.slot = slot  # None: nothing to publish to (one process); only the chart ticks
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False
        self._blocks_seen: tuple[int, int] = (-1, 0)
        self._blocks_json = "[]"

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
        try:
            self._publish()  # at once: a fresh worker shows up in the next scrape
            while not self._stopping.wait(PUBLISH_INTERVAL):
                self.stats.tick()
                self._publish()
        except Exception:  # a bug here must not pass silently, nor take the worker down
            logger.exception("metrics publisher failed; this worker's metrics stop here")

    def _publish(self) -> None:
        if self.slot is None:
            return
        if not self.slot.publish(self.encode(self.stats.snapshot())) and not self._warned:
            self._warned = True
            logger.warning("metrics snapshot too large for its shared slot: not published")

    def encode(self, snapshot: dict[str, Any]) -> bytes:
        """`snapshot` as JSON; "recent_blocks" (its last key) from the cache if unchanged."""
        blocks = snapshot.pop("recent_blocks")
        # The newest entry stays alive in the watchdog's deque while it is the newest,
        # so its id cannot be re-used by a later one: (length, id of the newest) tells.
        seen = (len(blocks), id(blocks[-1]) if blocks else 0)
        if seen != self._blocks_seen:
            self._blocks_json = json.dumps(blocks, separators=_COMPACT)
            self._blocks_seen = seen
        head = json.dumps(snapshot, separators=_COMPACT)
        return f'{head[:-1]},"recent_blocks":{self._blocks_json}}}'.encode()
