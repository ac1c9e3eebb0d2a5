"""A worker's heartbeat in shared memory, so the supervisor can read it without asking.

The supervisor creates a new `Heartbeat` for each worker it forks, just before
the fork; the anonymous shared mapping is inherited by the child. In the worker, the event
loop's own timer callback (see `watchdog.Watchdog`) writes `time.monotonic()`
into the slot a few times a second. The parent reads the slot with `age()`:
no pipe, no signal, no syscall, nothing the stuck child has to answer.

Why this is safe without a lock: the slot is one 8-byte, 8-byte-aligned double
at the start of a page, written with a single store (ctypes `c_double`), so a
reader sees either the old or the new value. `CLOCK_MONOTONIC` is system-wide,
so the parent's `time.monotonic()` is comparable with the child's stamps.

A value of 0.0 means "not stamped yet": a booting worker. The supervisor gives
a booting worker its boot time-out, not the heartbeat time-out.
"""

from __future__ import annotations

import ctypes
import mmap
import time


class Heartbeat:
    """One monotonic timestamp shared between a worker (writer) and its parent (reader)."""

    __slots__ = ("_map", "_slot")

    def __init__(self) -> None:
        # mmap(-1, n) is MAP_SHARED | MAP_ANONYMOUS on Unix: shared with children after fork().
        self._map = mmap.mmap(-1, mmap.PAGESIZE)
        self._slot: ctypes.c_double | None = ctypes.c_double.from_buffer(self._map)

    def stamp(self, now: float | None = None) -> None:
        """Write "the loop was alive at `now`" (time.monotonic() seconds). Loop thread only."""
        slot = self._slot
        if slot is not None:
            slot.value = time.monotonic() if now is None else now

    def last(self) -> float:
        """The last stamp (time.monotonic() seconds), or 0.0 if never stamped."""
        slot = self._slot
        return 0.0 if slot is None else slot.value

    def age(self, now: float | None = None) -> float | None:
        """Seconds since the last stamp, or None if the loop has not stamped yet."""
        last = self.last()
        if last == 0.0:
            return None
        return (time.monotonic() if now is None else now) - last

    def close(self) -> None:
        """Release the mapping in this process (the other side keeps its own). Idempotent."""
        if self._slot is not None:
            self._slot = None  # drop the buffer export first, or mmap.close() refuses
            self._map.close()
