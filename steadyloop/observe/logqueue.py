"""The bounded log queue and the one writer thread that empties it.

Callers (the event loop, pool threads) only append an entry and return; the
writer thread takes entries in order and hands them to a `BatchWriter` that
formats and writes them. The queue is bounded twice, in records and in
(estimated) bytes, and an entry keeps counting against the bounds until it has
been written, so the bounds are true bounds on memory held for logs.

When the queue is full:

- policy "drop" (the default): records below WARNING may only use 90% of the
  bounds, so warnings and errors still find room when the chatter does not.
  Whatever does not fit is dropped and counted per level and per target; the
  writer says so in the log itself ("steadyloop: dropped 953 log records
  (INFO) while the log sink was blocked") once it can write again.
- policy "block": callers wait for room, like a synchronous handler would.
  The writer thread itself never waits for room (it would wait for itself).

Lifecycle: OPEN -> CLOSING (draining, still accepting) -> CLOSED (drained:
callers write synchronously from now on) or FAILED (the deadline passed: what
could not be written is counted and callers' records are counted and
discarded, because the sink is stuck). A forked child starts DETACHED (its
parent's queue and thread do not exist there): callers write synchronously
until the child sets up its own pipeline.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

OPEN, CLOSING, CLOSED, FAILED, DETACHED = "open", "closing", "closed", "failed", "detached"

# Records below this level give way first when the queue is full.
LOW_PRIORITY_BELOW = logging.WARNING
LOW_PRIORITY_SHARE = 0.9

# The writer hands entries to the BatchWriter in slices this long, and frees
# their room in the queue after each slice.
SLICE = 256

# How often the writer looks for handlers that were attached behind its back,
# and the longest it waits before saying records were dropped under steady pressure.
IDLE_TICK = 1.0
# The writer is woken by the first record into an empty queue, then gathers for up to
# GATHER seconds (or until WAKE_RECORDS are waiting) before it writes. Waking it for every
# record made it fight the event loop for the GIL on every log call; batching costs a log
# line at most 50 ms of delay.
GATHER = 0.05
WAKE_RECORDS = 256
NOTICE_EVERY = 1.0

Entry = tuple[Any, Any, int]  # (target, payload, estimated size in bytes)


class BatchWriter(Protocol):
    def write(self, entries: list[Entry]) -> int:
        """Format and write entries in order; returns how many could not be written."""

    def write_notice(self, target: Any, message: str) -> None:
        """Write one steadyloop message to wherever `target` writes."""

    def progress(self) -> int:
        """Entries of the slice being written that are already written (any thread)."""

    def abandon(self) -> None:
        """Stop writing once the write in progress returns."""


class LogQueue:
    def __init__(
        self,
        writer: BatchWriter,
        *,
        max_records: int,
        max_bytes: int,
        overflow: str = "drop",
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        self._writer = writer
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._low_records = max(1, int(max_records * LOW_PRIORITY_SHARE))
        self._low_bytes = max(1, int(max_bytes * LOW_PRIORITY_SHARE))
        self._block = overflow == "block"
        self._on_tick = on_tick
        self._init_state()
        _LIVE.add(self)

    def _init_state(self) -> None:
        # An RLock: a signal handler that logs while its thread is inside put() must not deadlock.
        self._lock = threading.RLock()
        self._room = threading.Condition(self._lock)
        self._wakeup = threading.Event()
        self._entries: deque[Entry] = deque()
        self._records = 0  # accepted and not yet written (queued or being written)
        self._bytes = 0
        self._waiting = 0  # callers blocked for room
        self._state = OPEN
        self._thread: threading.Thread | None = None
        self._writer_ident: int | None = None
        self._dropped: dict[str, int] = {}  # level name -> count, since start
        # Drops not yet reported in the log: (id(target), level) -> [target, count].
        self._unsaid: dict[tuple[int, str], list[Any]] = {}
        self._lost = 0  # accepted but the sink refused them (write error) or the deadline passed
        self._last_notice = 0.0

    # -- callers' side -------------------------------------------------------------

    def put(self, target: Any, payload: Any, levelno: int, levelname: str, size: int) -> bool:
        """Queue one entry. False means: the queue is not running, write it yourself.

        Never waits, except under the "block" policy when the queue is full.
        """
        with self._lock:
            state = self._state
            if state is not OPEN and state is not CLOSING:
                if state is FAILED:
                    self._count_drop(target, levelname)
                    return True
                return False
            records = self._records + 1
            nbytes = self._bytes + size
            if levelno < LOW_PRIORITY_BELOW:
                full = records > self._low_records or nbytes > self._low_bytes
            else:
                full = records > self._max_records or nbytes > self._max_bytes
            if full and self._records == 0:
                full = False  # one record larger than the byte bound still goes through, alone
            if full:
                if not self._block or threading.get_ident() == self._writer_ident:
                    self._count_drop(target, levelname)
                    return True
                if not self._wait_for_room(levelno, size):
                    if self._state is FAILED:
                        self._count_drop(target, levelname)
                        return True
                    return False
            self._entries.append((target, payload, size))
            self._records += 1
            self._bytes += size
            records = self._records  # not the count from before a wait for room
        if (records == 1 or records >= WAKE_RECORDS) and not self._wakeup.is_set():
            self._wakeup.set()
        return True

    def _wait_for_room(self, levelno: int, size: int) -> bool:
        """Block policy: wait (lock held by the caller) until the entry fits. False if closed."""
        self._waiting += 1
        try:
            while True:
                if self._state is not OPEN and self._state is not CLOSING:
                    return False
                low = levelno < LOW_PRIORITY_BELOW
                max_r = self._low_records if low else self._max_records
                max_b = self._low_bytes if low else self._max_bytes
                if self._records == 0 or (self._records + 1 <= max_r and self._bytes + size <= max_b):
                    return True
                # Woken by the writer whenever it frees room; the timeout only
                # guards against a writer that died.
                self._room.wait(0.5)
        finally:
            self._waiting -= 1

    def _count_drop(self, target: Any, levelname: str) -> None:
        self._dropped[levelname] = self._dropped.get(levelname, 0) + 1
        key = (id(target), levelname)
        slot = self._unsaid.get(key)
        if slot is None:
            self._unsaid[key] = [target, 1]
        else:
            slot[1] += 1

    # -- counters --------------------------------------------------------------------

    def dropped(self) -> dict[str, int]:
        with self._lock:
            return dict(self._dropped)

    def lost(self) -> int:
        with self._lock:
            return self._lost

    def pending(self) -> int:
        with self._lock:
            return self._records

    @property
    def state(self) -> str:
        return self._state

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            # A daemon thread: a writer stuck on a dead sink must not keep the
            # process alive; close() gives it a deadline to drain first.
            self._thread = threading.Thread(target=self._run, name="steadyloop-log-writer", daemon=True)
            self._thread.start()

    def close(self, timeout: float) -> tuple[int, list[str]]:
        """Drain within `timeout` seconds and stop the writer.

        Returns (records that could not be written, drop notices that could not
        be written) so the caller can say so where it still can. Idempotent.
        """
        with self._lock:
            if self._state is DETACHED:
                self._state = CLOSED
                return 0, []
            if self._state is not OPEN:
                return 0, []
            self._state = CLOSING
            thread = self._thread
            if thread is None or not thread.is_alive():
                # Never started, or died: a fresh writer drains what is left.
                thread = self._thread = threading.Thread(
                    target=self._run, name="steadyloop-log-writer", daemon=True
                )
                thread.start()
            self._room.notify_all()
        self._wakeup.set()
        thread.join(timeout)
        with self._lock:
            undelivered = 0
            if self._state is not CLOSED:  # the writer did not finish in time
                # The writer is stuck inside a write: entries of its slice before
                # the stuck chunk are written, the rest (and the queue) are not.
                undelivered = self._records - self._writer.progress()
                self._state = FAILED
                self._writer.abandon()
                self._lost += undelivered
            notices = [self._notice_text(level, n) for (_, level), (_, n) in self._unsaid.items()]
            self._unsaid.clear()
            self._room.notify_all()
        return undelivered, notices

    def after_fork_in_child(self) -> None:
        """The parent's thread and entries do not exist here; write synchronously."""
        self._init_state()
        self._state = DETACHED

    # -- the writer thread -------------------------------------------------------------

    def _run(self) -> None:
        self._writer_ident = threading.get_ident()
        last_tick = time.monotonic()
        while True:
            self._wakeup.clear()
            if 0 < self._records < WAKE_RECORDS and self._state is OPEN:
                # Let callers add more before writing; put() or close() cut this short.
                self._wakeup.wait(GATHER)
                self._wakeup.clear()
            with self._lock:
                if self._state is FAILED:
                    return  # close() gave up on us and counted what is left
                batch = self._entries
                if batch:
                    self._entries = deque()
                elif self._state is CLOSING and not self._unsaid:
                    # Drained. From now on callers write synchronously (put() says False).
                    self._state = CLOSED
                    return
                closing = self._state is CLOSING
            idle = not batch
            if idle:
                self._say_drops(force=True)  # the queue is empty: the sink caught up
                if closing:
                    continue
            else:
                self._write(batch)
            now = time.monotonic()
            if now - last_tick >= IDLE_TICK and not closing:
                last_tick = now
                self._tick()
            if idle:
                self._wakeup.wait(IDLE_TICK)

    def _write(self, batch: deque[Entry]) -> None:
        while batch:
            n = min(SLICE, len(batch))
            piece = [batch.popleft() for _ in range(n)]
            try:
                failed = self._writer.write(piece)
            except Exception:  # a bug in formatting must not kill the writer
                failed = len(piece)
            size = sum(entry[2] for entry in piece)
            with self._lock:
                if self._state is FAILED:
                    return  # close() counted this slice and the rest as undelivered
                self._records -= n
                self._bytes -= size
                self._lost += failed
                if self._waiting:
                    self._room.notify_all()
            self._say_drops(force=False)

    def _say_drops(self, force: bool) -> None:
        """Write pending drop counts once the sink takes writes again."""
        with self._lock:
            if not self._unsaid:
                return
            relieved = self._records <= self._max_records // 2
            if not (force or relieved or time.monotonic() - self._last_notice >= NOTICE_EVERY):
                return
            unsaid = list(self._unsaid.items())
            self._unsaid.clear()
            self._last_notice = time.monotonic()
        for (_, level), (target, count) in unsaid:
            try:
                self._writer.write_notice(target, self._notice_text(level, count))
            except Exception:
                with self._lock:
                    self._lost += 1

    @staticmethod
    def _notice_text(level: str, count: int) -> str:
        noun = "record" if count == 1 else "records"
        return f"steadyloop: dropped {count} log {noun} ({level}) while the log sink was blocked"

    def _tick(self) -> None:
        if self._on_tick is not None:
            with contextlib.suppress(Exception):  # best effort; the queue must keep running
                self._on_tick()


_LIVE: weakref.WeakSet[LogQueue] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for queue in list(_LIVE):
        queue.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
