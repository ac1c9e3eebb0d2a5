"""The thread pools for sync work, made visible: busy threads, queued tasks, queue wait.

One `--threads N` governs every place sync code runs in a worker process:

    "wsgi"      the WSGI bridge's own pool (steadyloop.wsgi.pool)
    "anyio"     anyio's default thread limiter: Starlette/FastAPI `def` endpoints,
                `run_in_threadpool`, `anyio.to_thread.run_sync`
    "executor"  the loop's default executor: `loop.run_in_executor(None, ...)`,
                sendfile, DNS lookups

Each pool has a `PoolStats`: plain counters a metrics endpoint reads with
`snapshot()` (or all of them with `snapshot_all()`). A task that waits for a
thread longer than the block threshold is reported like a blocked loop,

    GET /sync waited 340 ms for a pool thread; 40 of 40 busy, 12 queued (pool anyio)

through the "steadyloop.threadpool" logger (the non-blocking log pipeline),
rate-limited by a token bucket; suppressed reports are counted and the count
goes into the next report. A task still waiting is reported while it waits
(a pool whose threads are all stuck would otherwise never say anything): a
timer on the loop looks at the oldest waiting task.

Counters are written under one short lock from whichever thread starts or
ends a task; reading them never blocks anyone for long.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from steadyloop.observe.inflight import INFLIGHT, RequestInfo
from steadyloop.observe.lag import LagHistogram
from steadyloop.observe.ratelimit import TokenBucket

logger = logging.getLogger("steadyloop.threadpool")

P = ParamSpec("P")
T = TypeVar("T")

REPORT_BURST = 3  # reports at once ...
REPORT_INTERVAL = 10.0  # ... then one more every this many seconds
RECENT_WAITS = 10  # waits kept for the status page
# Queue wait buckets (seconds): a task that gets a thread at once lands in the first.
WAIT_BOUNDS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class Ticket:
    """One task between 'submitted' and 'got a thread'."""

    __slots__ = ("label", "reported", "since")

    def __init__(self, label: object, since: float) -> None:
        self.label = label  # a RequestInfo, a string, or None; only formatted for reports
        self.since = since
        self.reported = False

    def what(self) -> str:
        """The task's name in reports (a subclass that knows its request may name it itself)."""
        return describe(self.label)


def describe(label: object) -> str:
    if label is None:
        return "a task"
    if isinstance(label, str):
        return label
    method = getattr(label, "method", None)
    path = getattr(label, "path", None)
    if method is not None and path is not None:
        return f"{method} {path}"
    return str(label)


def current_request() -> RequestInfo | None:
    """The request the calling task serves, if called from a request task on a loop."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop in this thread
        return None
    return INFLIGHT.get(task) if task is not None else None


class PoolStats:
    """Counters and long-wait reports for one pool of threads.

    Lifecycle of a task: `enqueue()` when submitted, `start(ticket)` when a
    thread runs it (or `abandon(ticket)` if it never will), `finish()` when
    done.
    """

    def __init__(
        self,
        name: str,
        size: int,
        threshold: float,
        *,
        report_burst: int = REPORT_BURST,
        report_interval: float = REPORT_INTERVAL,
    ) -> None:
        self.name = name
        self.size = size
        self.threshold = threshold  # seconds; 0 turns reports off (counters stay on)
        self.busy = 0  # tasks running on a thread now
        self.submitted = 0
        self.completed = 0
        self.waited = 0  # tasks that waited more than a moment (1 ms) for a thread
        self.wait_seconds = 0.0  # total time tasks spent queued
        self.longest_wait = 0.0
        self.long_waits = 0  # waits longer than the threshold
        self.wait_histogram = LagHistogram(WAIT_BOUNDS)  # every task's queue wait
        # (time.time(), wait, what) of tasks that waited more than a moment, newest last.
        self.recent_waits: collections.deque[tuple[float, float, str]] = collections.deque(
            maxlen=RECENT_WAITS
        )
        self.reports = 0
        self.suppressed = 0
        self._pending_suppressed = 0
        self._waiting: dict[Ticket, None] = {}  # insertion-ordered: the oldest comes first
        self._lock = threading.Lock()
        self._bucket = TokenBucket(report_burst, report_interval)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._check_armed = False

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop whose timer looks for tasks still waiting; without one, only finished waits
        are reported."""
        self._loop = loop

    # -- a task's life ------------------------------------------------------------------

    def enqueue(self, label: object = None) -> Ticket:
        return self.enqueue_counted(label)[0]

    def enqueue_counted(self, label: object = None) -> tuple[Ticket, int]:
        """`enqueue`, and how many tasks are running or queued now, this one included: a pool
        with fewer threads than that has none idle for this task."""
        ticket = Ticket(label, 0.0)
        return ticket, self.enqueue_ticket(ticket)

    def enqueue_ticket(self, ticket: Ticket) -> int:
        """`enqueue_counted` for a ticket made by the caller (a job that is its own ticket);
        sets its `since`."""
        ticket.since = time.monotonic()
        with self._lock:
            self.submitted += 1
            waiting = self._waiting
            waiting[ticket] = None
            demand = self.busy + len(waiting)
            arm = (
                demand > self.size and self.threshold > 0 and not self._check_armed and self._loop is not None
            )
            if arm:
                self._check_armed = True
        if arm:
            self._arm()
        return demand

    def start(self, ticket: Ticket) -> float:
        """The task got a thread; returns how long it waited."""
        now = time.monotonic()
        wait = now - ticket.since
        report = False
        with self._lock:
            self._waiting.pop(ticket, None)
            self.busy += 1
            self.wait_histogram.record(wait)
            if wait > 0.001:
                self.recent_waits.append((time.time(), wait, ticket.what()))
                self.waited += 1
                self.wait_seconds += wait
                if wait > self.longest_wait:
                    self.longest_wait = wait
            if self.threshold > 0 and wait > self.threshold:
                self.long_waits += 1
                report = not ticket.reported
                ticket.reported = True
                busy, queued = self.busy, len(self._waiting)
        if report:
            # `busy` already counts this task; the pool was full while it waited.
            self._report(f"{ticket.what()} waited {wait * 1000:.0f} ms", wait, busy, queued)
        return wait

    def abandon(self, ticket: Ticket) -> None:
        """The task was cancelled while it waited."""
        with self._lock:
            self._waiting.pop(ticket, None)

    def finish(self) -> None:
        with self._lock:
            self.busy -= 1
            self.completed += 1

    # -- reading ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            oldest = next(iter(self._waiting), None)
            return {
                "name": self.name,
                "size": self.size,
                "busy": self.busy,
                "queued": len(self._waiting),
                "oldest_wait": time.monotonic() - oldest.since if oldest is not None else 0.0,
                "submitted": self.submitted,
                "completed": self.completed,
                "waited": self.waited,
                "wait_seconds": self.wait_seconds,
                "longest_wait": self.longest_wait,
                "long_waits": self.long_waits,
                "reports": self.reports,
                "suppressed": self.suppressed,
                "wait_histogram": self.wait_histogram.snapshot(),
                "recent_waits": list(self.recent_waits),
            }

    # -- reports while a task still waits ----------------------------------------------------

    def _arm(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            self._check_armed = False
            return
        try:
            loop.call_soon_threadsafe(self._schedule_check)
        except RuntimeError:  # the loop closed meanwhile
            self._check_armed = False

    def _schedule_check(self) -> None:
        assert self._loop is not None
        self._loop.call_later(self.threshold, self.check_waiting)

    def check_waiting(self) -> None:
        """Report the oldest task if it has waited past the threshold; runs on the loop."""
        now = time.monotonic()
        report: tuple[Ticket, float, int, int] | None = None
        with self._lock:
            oldest = next(iter(self._waiting), None)
            if oldest is None:
                self._check_armed = False
                return
            waited = now - oldest.since
            if waited > self.threshold and not oldest.reported:
                oldest.reported = True
                report = (oldest, waited, self.busy, len(self._waiting))
            # Look again when the oldest would cross the threshold (or soon, if it has).
            delay = max(self.threshold - waited, self.threshold / 2, 0.01)
        if report is not None:
            ticket, waited, busy, queued = report
            self._report(
                f"{ticket.what()} has waited {waited * 1000:.0f} ms so far",
                waited,
                busy,
                queued,
            )
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_later(delay, self.check_waiting)
        else:
            self._check_armed = False

    def _report(self, what: str, wait: float, busy: int, queued: int) -> None:
        with self._lock:
            admitted = self._bucket.take()
            if not admitted:
                self.suppressed += 1
                self._pending_suppressed += 1
                return
            self.reports += 1
            suppressed, self._pending_suppressed = self._pending_suppressed, 0
        message = f"{what} for a pool thread; {busy} of {self.size} busy, {queued} queued (pool {self.name})"
        if suppressed:
            message += f"; {suppressed} similar reports suppressed"
        logger.warning(
            message,
            extra={
                "threadpool": {
                    "pool": self.name,
                    "wait": wait,
                    "busy": busy,
                    "size": self.size,
                    "queued": queued,
                    "suppressed": suppressed,
                }
            },
        )


# Every pool of this process, by name, for a metrics endpoint.
POOLS: dict[str, PoolStats] = {}


def register(stats: PoolStats) -> PoolStats:
    POOLS[stats.name] = stats
    return stats


def snapshot_all() -> dict[str, dict[str, Any]]:
    return {name: stats.snapshot() for name, stats in list(POOLS.items())}


# -- the loop's default executor -----------------------------------------------------------


class InstrumentedExecutor(concurrent.futures.ThreadPoolExecutor):
    """A ThreadPoolExecutor whose queue wait and busy threads go into a PoolStats."""

    def __init__(self, max_workers: int, stats: PoolStats, thread_name_prefix: str = "") -> None:
        super().__init__(max_workers, thread_name_prefix=thread_name_prefix)
        self.stats = stats

    def submit(
        self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> concurrent.futures.Future[T]:
        label = current_request() or getattr(fn, "__qualname__", None)
        ticket = self.stats.enqueue(label)
        try:
            return super().submit(self._run, ticket, fn, args, kwargs)
        except BaseException:
            self.stats.abandon(ticket)
            raise

    def _run(self, ticket: Ticket, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
        stats = self.stats
        stats.start(ticket)
        try:
            return fn(*args, **kwargs)
        finally:
            stats.finish()


# -- anyio's default thread limiter ---------------------------------------------------------


def install_anyio_limiter(threads: int, stats: PoolStats) -> bool:
    """Make anyio's default thread limiter for the running loop an instrumented one of `threads`.

    Must be called from a task on the running loop (anyio keys the default
    limiter by loop). Starlette's `run_in_threadpool` -- and so every FastAPI
    `def` endpoint -- takes its thread through this limiter. anyio has no
    public setter for the default limiter, so this sets its run variable; if
    that is missing (another anyio release), the public limiter's size is still
    set and only the wait reports are lost. Returns whether instrumentation is on.
    """
    try:
        from anyio import to_thread
    except ImportError:
        return False
    try:
        from anyio._backends import _asyncio as backend

        limiter = _instrumented_limiter_class(backend.CapacityLimiter)(threads)
        limiter.stats = stats
        limiter.counted = set()
        backend._default_thread_limiter.set(limiter)
        if to_thread.current_default_thread_limiter() is limiter:
            return True
    except Exception:
        logger.debug("could not instrument anyio's thread limiter", exc_info=True)
    try:
        to_thread.current_default_thread_limiter().total_tokens = threads
    except Exception:
        logger.debug("could not set anyio's thread limiter", exc_info=True)
    return False


_limiter_classes: dict[type, type] = {}


def _instrumented_limiter_class(base: type) -> Any:
    cls = _limiter_classes.get(base)
    if cls is None:

        class InstrumentedCapacityLimiter(base):  # type: ignore[misc]
            """anyio's asyncio CapacityLimiter, counting waits and busy tokens into a PoolStats."""

            stats: PoolStats
            counted: set[object]  # borrowers whose tokens the stats count as busy

            async def acquire_on_behalf_of(self, borrower: object) -> None:
                stats = self.stats
                ticket = stats.enqueue(current_request())
                try:
                    await super().acquire_on_behalf_of(borrower)
                except BaseException:
                    stats.abandon(ticket)
                    raise
                self.counted.add(borrower)
                stats.start(ticket)

            def release_on_behalf_of(self, borrower: object) -> None:
                super().release_on_behalf_of(borrower)
                # A token taken with acquire_nowait never waited and was never counted.
                if borrower in self.counted:
                    self.counted.discard(borrower)
                    self.stats.finish()

        cls = _limiter_classes[base] = InstrumentedCapacityLimiter
    return cls


def install_thread_pools(loop: asyncio.AbstractEventLoop, threads: int, block_threshold: float) -> None:
    """`--threads N` for one worker's loop: the default executor and anyio's limiter.

    Call from a task on `loop` (anyio's limiter is per loop). The WSGI bridge
    sizes its own pool from the same setting.
    """
    executor_stats = register(PoolStats("executor", threads, block_threshold))
    executor_stats.bind(loop)
    loop.set_default_executor(
        InstrumentedExecutor(threads, executor_stats, thread_name_prefix="steadyloop-sync")
    )
    anyio_stats = register(PoolStats("anyio", threads, block_threshold))
    anyio_stats.bind(loop)
    install_anyio_limiter(threads, anyio_stats)
