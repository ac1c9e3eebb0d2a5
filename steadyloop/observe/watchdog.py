"""The loop watchdog: notice when the event loop is blocked, and say where.

Two halves that only share a few attributes:

* The loop's own heartbeat: a `call_later` chain run *by the loop*, every
  `period` seconds (a quarter of the threshold). Each beat records how late it
  ran (loop lag, into `lag`), stamps `last_beat` and the supervisor's shared
  `Heartbeat` slot, and re-arms faulthandler's hard-hang backstop. A beat that
  ran more than `block_threshold` late marks the end of a block; the loop
  appends it to `_ended` (a deque append: no lock, no I/O on the loop).

* A watchdog thread that sleeps until the next beat would be overdue. If the
  beat has not come, the loop is stuck *now*: the thread samples the loop
  thread's stack (`sys._current_frames`) and the running request until the
  beat comes back, merging identical stacks. Then it writes one report through
  the "steadyloop.watchdog" logger (the non-blocking log pipeline, never the
  loop's sink directly), rate-limited by a token bucket; suppressed reports are
  counted, and the count goes into the next report.

A block the thread did not see while it lasted (the loop thread held the GIL
in C code, or the machine was starved) is still counted and reported from the
loop's record, without a stack: every block is either reported or suppressed.

The hard-hang backstop is faulthandler's C watchdog thread, which dumps every
thread's stack without the GIL: the loop re-arms `dump_traceback_later` about
once a second, so it fires only if the loop has not beaten for
`block_dump_after` seconds. `DUMP_SIGNAL` (SIGUSR2) dumps every stack on demand.
"""

from __future__ import annotations

import asyncio
import collections
import faulthandler
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from steadyloop.config import WatchdogOptions
from steadyloop.observe.heartbeat import Heartbeat
from steadyloop.observe.inflight import INFLIGHT
from steadyloop.observe.lag import LagHistogram
from steadyloop.observe.ratelimit import TokenBucket
from steadyloop.observe.stacks import (
    FrameClassifier,
    FrameKey,
    Stack,
    StackCounts,
    format_stack,
    locate,
    sample_thread,
)
from steadyloop.observe.words import counted

logger = logging.getLogger("steadyloop.watchdog")

# SIGUSR2, not SIGUSR1: USR1 means "reopen log files" to gunicorn (and to our
# log pipeline's operators), QUIT and TERM mean "shut down" to gunicorn and
# nginx. Nothing in steadyloop's supervisor or gunicorn's workers uses USR2.
DUMP_SIGNAL: signal.Signals | None = getattr(signal, "SIGUSR2", None)

# With no watchdog thread (threshold 0), a supervisor's heartbeat slot is still
# stamped, at this period: the supervisor's --worker-timeout is whole seconds.
HEARTBEAT_ONLY_PERIOD = 0.25
MAX_STACKS_SHOWN = 3  # distinct stacks printed in full per report
MAX_STACKS_KEPT = 64  # distinct stacks remembered per block; more are counted as "other"
HELD_OFF_NOTE = 0.05  # seconds the thread may be late to wake before a report remarks on it
RECENT_BLOCKS = 20  # blocks kept for the status page
MAX_LOCATIONS = 32  # distinct block locations counted for metrics; the rest count as "other"
UNSAMPLED_LOCATION = "unsampled"  # a block the thread saw no stack of
OUTSIDE_APP_LOCATION = "outside_app"  # sampled, but no app frame on the stack (server start-up, ...)
OTHER_LOCATION = "other"


# faulthandler has one dump_traceback_later timer and one handler per signal for
# the whole process. A worker has one loop and one Watchdog; where a process runs
# several (in-process test servers), the first one started owns them and the
# others go without, rather than disarming each other.
_faulthandler_lock = threading.Lock()
_faulthandler_owner: Watchdog | None = None


def _claim_faulthandler(watchdog: Watchdog) -> bool:
    global _faulthandler_owner
    with _faulthandler_lock:
        if _faulthandler_owner is None:
            _faulthandler_owner = watchdog
        return _faulthandler_owner is watchdog


def _release_faulthandler(watchdog: Watchdog) -> None:
    global _faulthandler_owner
    with _faulthandler_lock:
        if _faulthandler_owner is watchdog:
            _faulthandler_owner = None


class Running(NamedTuple):
    """What the loop was running when a sample was taken."""

    method: str | None = None
    path: str | None = None
    request_id: str | None = None
    task: str | None = None  # task name and coroutine, when it is not a request

    def describe(self) -> str:
        if self.method is not None:
            return f"{self.method} {self.path} (request {self.request_id})"
        if self.task is not None:
            return f"task {self.task}, not a request"
        return "a plain loop callback, no task"


@dataclass
class _Block:
    """What the thread saw of one block while it lasted."""

    beat: float  # last_beat before the block: the key the loop's record will carry
    admitted: bool  # a report token was taken when the block was noticed
    held_off: float  # how long after the beat was overdue the thread got to run
    stacks: StackCounts = field(default_factory=StackCounts)
    other_samples: int = 0  # samples of stacks beyond MAX_STACKS_KEPT
    running: collections.Counter[Running] = field(default_factory=collections.Counter)


class Watchdog:
    """Heartbeat, lag histogram, block reports and stack dumps for one event loop.

    Counters (`blocks`, `reports`, `suppressed`, `blocked_seconds`,
    `longest_block`) and `lag` are plain attributes, written by one thread
    and readable from any: `snapshot()` gathers them for a metrics endpoint.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        options: WatchdogOptions,
        heartbeat: Heartbeat | None = None,
        *,
        report_burst: int = 3,
        report_interval: float = 10.0,
        dump_file: int = 2,
        dump_signal: signal.Signals | None = DUMP_SIGNAL,
    ) -> None:
        self._loop = loop
        self._threshold = options.block_threshold
        self._dump_after = options.block_dump_after
        self._heartbeat = heartbeat
        self._dump_file = dump_file
        self._dump_signal = dump_signal
        self.enabled = self._threshold > 0
        if self.enabled:
            # Detection needs a beat well inside the threshold: a block is seen
            # within threshold + period, and its reported length (the gap
            # between beats) is at most one period too long.
            self.period = min(max(self._threshold / 4, 0.002), HEARTBEAT_ONLY_PERIOD)
        else:
            self.period = HEARTBEAT_ONLY_PERIOD
        self._sample_interval = min(max(self._threshold / 5, 0.002), 0.02)
        # faulthandler is re-armed at most this often (arming starts a C thread):
        # the dump fires after block_dump_after .. block_dump_after + rearm seconds.
        self._rearm = min(1.0, self._dump_after / 4) if self._dump_after > 0 else 0.0
        self._bucket = TokenBucket(report_burst, report_interval)
        self._classifier = FrameClassifier()

        self.lag = LagHistogram()
        self.blocks = 0  # blocks that ended: reports + suppressed
        self.reports = 0
        self.suppressed = 0
        self.blocked_seconds = 0.0
        self.longest_block = 0.0
        self.last_beat = 0.0  # time.monotonic() of the loop's last heartbeat
        self.blocked_since: float | None = None  # set by the thread while it watches a block
        # Written by the watchdog thread only; read (copied) by a metrics publisher.
        self.recent_blocks: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECENT_BLOCKS)
        self.block_locations: dict[str, tuple[int, float]] = {}  # location -> (blocks, seconds)

        self._pending_suppressed = 0  # since the last report
        self._ended: collections.deque[tuple[float, float]] = collections.deque()
        self._watched: _Block | None = None
        self._due = 0.0
        self._rearm_at = 0.0
        self._armed = False
        self._timer: asyncio.TimerHandle | None = None
        self._thread: threading.Thread | None = None
        self._loop_thread_id = 0
        self._signal_registered = False
        self._owns_faulthandler = False
        self._started = False
        self._stopping = threading.Event()

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Start the heartbeat timer and the thread. Call from inside the running loop."""
        if self._started:
            raise RuntimeError("Watchdog.start() called twice")
        if asyncio.get_running_loop() is not self._loop:
            raise RuntimeError("Watchdog.start() must be called from inside its running loop")
        self._started = True
        self._loop_thread_id = threading.get_ident()
        self._owns_faulthandler = _claim_faulthandler(self)
        if self._owns_faulthandler and self._dump_signal is not None:
            # Dumps from the C signal handler: works while the loop thread holds the GIL.
            # chain=False: chaining to the default action of USR2 would kill the process.
            # Never unregistered: a dump asked for during shutdown is welcome, and the
            # supervisor's worker may have registered the same signal before us.
            faulthandler.register(self._dump_signal, file=self._dump_file, all_threads=True)
            self._signal_registered = True
        if not self.enabled and self._heartbeat is None:
            return  # off: no timer, no thread, nothing on the loop
        now = time.monotonic()
        self.last_beat = now
        if self._heartbeat is not None:
            self._heartbeat.stamp(now)
        self._arm_dump(now)
        self._due = now + self.period
        self._timer = self._loop.call_later(self.period, self._beat)
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="steadyloop-watchdog", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the timer, disarm faulthandler, report what is pending and join the thread.

        Idempotent. Call it from the loop thread, or after the loop has stopped.
        """
        if self._stopping.is_set():
            return
        self._stopping.set()  # _beat sees it and does not reschedule itself
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._armed:
            faulthandler.cancel_dump_traceback_later()
            self._armed = False
        if self._owns_faulthandler:
            _release_faulthandler(self)
            self._owns_faulthandler = False
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            self._summarize()

    def _summarize(self) -> None:
        """One line at shutdown, so the totals (suppressed reports above all) are never lost."""
        if self.blocks == 0:
            return
        logger.info(
            "loop watchdog: %s, %.3f s blocked in all, longest %.3f s; "
            "%d reported, %d suppressed by the rate limit (%d since the last report)",
            counted(self.blocks, "block"),
            self.blocked_seconds,
            self.longest_block,
            self.reports,
            self.suppressed,
            self._pending_suppressed,
        )

    # -- read side -------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Counters and lag histogram, for a metrics endpoint."""
        return {
            "enabled": self.enabled,
            "blocks": self.blocks,
            "reports": self.reports,
            "suppressed": self.suppressed,
            "blocked_seconds": self.blocked_seconds,
            "longest_block": self.longest_block,
            "heartbeat_age": time.monotonic() - self.last_beat if self.last_beat else None,
            "lag": self.lag.snapshot(),
        }

    # -- the loop's half ---------------------------------------------------------

    def _beat(self) -> None:
        """Timer callback on the loop: must stay tiny, it runs a few dozen times a second."""
        if self._stopping.is_set():
            return
        now = time.monotonic()
        lag = now - self._due
        self.lag.record(lag)
        if self.enabled and lag > self._threshold:
            self._ended.append((self.last_beat, now))
        self.last_beat = now
        if self._heartbeat is not None:
            self._heartbeat.stamp(now)
        if now >= self._rearm_at:
            self._arm_dump(now)
        self._due = now + self.period
        self._timer = self._loop.call_later(self.period, self._beat)

    def _arm_dump(self, now: float) -> None:
        if not self.enabled or self._rearm <= 0 or not self._owns_faulthandler:
            return
        faulthandler.dump_traceback_later(self._dump_after + self._rearm, repeat=False, file=self._dump_file)
        self._armed = True
        self._rearm_at = now + self._rearm

    # -- the thread's half --------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                beat = self.last_beat
                overdue_at = beat + self.period + self._threshold
                wait = overdue_at - time.monotonic()
                if wait > 0 or self.last_beat != beat:
                    self._stopping.wait(max(wait, 0.0))
                else:
                    self._watch(beat, overdue_at)
                self._drain()
            self._drain()
        except Exception:  # a bug here must not pass silently, nor take the worker down
            logger.exception("loop watchdog thread failed; block reports are off")

    def _watch(self, beat: float, overdue_at: float) -> None:
        """The beat after `beat` is overdue: sample until the loop beats again."""
        started = time.monotonic()
        self.blocked_since = beat
        block = _Block(beat=beat, admitted=self._bucket.take(), held_off=started - overdue_at)
        self._watched = block
        warned = False
        while self.last_beat == beat and not self._stopping.is_set():
            # A block whose report the rate limit refused still gets one sample: its
            # location is counted in the metrics.
            if block.admitted or not block.stacks.samples:
                self._sample(block)
            blocked = time.monotonic() - beat - self.period
            if not warned and self._dump_after > 0 and blocked >= self._dump_after:
                warned = True
                self._warn_still_blocked(block, blocked)
            # Fine samples at first; a long block needs no more than a few a second.
            elapsed = time.monotonic() - started
            self._stopping.wait(min(max(self._sample_interval, elapsed / 20), 0.25))
        self.blocked_since = None

    def _sample(self, block: _Block) -> None:
        stack = sample_thread(self._loop_thread_id)
        running = self._running()
        if stack is None or self.last_beat != block.beat:
            return  # the loop came back meanwhile: the sample may show it idle
        if len(block.stacks) < MAX_STACKS_KEPT or stack in block.stacks:
            block.stacks.add(stack)
        else:
            block.other_samples += 1
        block.running[running] += 1

    def _running(self) -> Running:
        # current_task(loop) from another thread reads asyncio's per-loop record
        # of the task being stepped (uvloop steps asyncio Tasks too): no call
        # into the loop, safe under the GIL.
        try:
            task = asyncio.current_task(self._loop)
        except RuntimeError:
            return Running()
        if task is None:
            return Running()
        info = INFLIGHT.get(task)
        if info is not None:
            return Running(str(info.method), str(info.path), str(info.request_id))
        coro = task.get_coro()
        name = getattr(coro, "__qualname__", type(coro).__name__)
        return Running(task=f"{task.get_name()!r} running {name}")

    def _drain(self) -> None:
        """Turn the loop's record of ended blocks into reports (or suppressed counts)."""
        while self._ended:
            beat, recovered = self._ended.popleft()
            watched = self._watched
            block = watched if watched is not None and watched.beat == beat else None
            if block is not None:
                self._watched = None
            self._finish(recovered - beat, block)

    def _finish(self, duration: float, block: _Block | None) -> None:
        self.blocks += 1
        self.blocked_seconds += duration
        self.longest_block = max(self.longest_block, duration)
        location = self._count_location(duration, block)
        admitted = block.admitted if block is not None else self._bucket.take()
        if not admitted:
            self.suppressed += 1
            self._pending_suppressed += 1
            running = block.running.most_common(1)[0][0] if block and block.running else Running()
            self.recent_blocks.append(
                {
                    "time": time.time(),
                    "duration": duration,
                    "location": location,
                    "reported": False,
                    **running._asdict(),
                    # The one sample taken for its location: the status page shows it.
                    "stacks": self._stacks_payload(block.stacks.most_common(1) if block else []),
                }
            )
            return
        suppressed_before, self._pending_suppressed = self._pending_suppressed, 0
        message, payload = self._compose(duration, block, suppressed_before)
        self.reports += 1
        self.recent_blocks.append({**payload, "time": time.time(), "location": location, "reported": True})
        logger.warning(message, extra={"block": payload})

    def _stacks_payload(self, stacks: list[tuple[Stack, int]]) -> list[dict[str, Any]]:
        cls = self._classifier
        return [
            {
                "count": count,
                "frames": [cls.describe(f) for f in stack],
                "app": [cls.is_app(f.filename) for f in stack],
            }
            for stack, count in stacks[:MAX_STACKS_SHOWN]
        ]

    def _count_location(self, duration: float, block: _Block | None) -> str:
        location = self.location_of(block.stacks.most_common(1)[0][0] if block and block.stacks else ())
        locations = self.block_locations
        if location not in locations and len(locations) >= MAX_LOCATIONS:
            location = OTHER_LOCATION
        blocks, seconds = locations.get(location, (0, 0.0))
        # One tuple store: a reader on another thread sees the old pair or the new one.
        locations[location] = (blocks + 1, seconds + duration)
        return location

    def location_of(self, stack: Stack) -> str:
        """The app's `file:line` that held the loop in `stack`, for a metrics label."""
        if not stack:
            return UNSAMPLED_LOCATION
        frame = locate(stack, self._classifier).app_frame
        if frame is None:
            return OUTSIDE_APP_LOCATION
        return f"{self._classifier.display(frame.filename)}:{frame.lineno}"

    def blocked_now(self) -> tuple[float, str | None] | None:
        """(seconds so far, app location if sampled) while the loop is blocked now; else None."""
        since = self.blocked_since
        block = self._watched
        if since is None:
            return None
        location = None
        if block is not None and block.beat == since:
            try:
                top = block.stacks.most_common(1)
            except RuntimeError:  # the thread added a stack as we looked
                top = []
            if top:
                location = self.location_of(top[0][0])
        return max(0.0, time.monotonic() - since - self.period), location

    def _warn_still_blocked(self, block: _Block, blocked: float) -> None:
        stack = sample_thread(self._loop_thread_id)
        where = ""
        if stack is not None:
            w = locate(stack, self._classifier)
            frame = w.app_frame or w.stuck_in
            if frame is not None:
                where = f", at {self._classifier.describe(frame)}"
        logger.warning(
            "event loop still blocked after %.1f s, running %s%s; faulthandler dumps every "
            "thread's stack to stderr",
            blocked,
            self._running().describe(),
            where,
        )

    # -- the report ---------------------------------------------------------------

    def _compose(
        self, duration: float, block: _Block | None, suppressed_before: int
    ) -> tuple[str, dict[str, Any]]:
        cls = self._classifier
        stacks = block.stacks.most_common() if block is not None else []
        running = block.running.most_common(1)[0][0] if block and block.running else None
        main: Stack = stacks[0][0] if stacks else ()
        where = locate(main, cls)

        def show(frame: FrameKey | None) -> str | None:
            return cls.describe(frame) if frame is not None else None

        head = f"event loop blocked for {duration:.3f} s"
        if running is not None:
            head += f", running {running.describe()}"
        if where.app_frame is not None:
            head += f", at {cls.describe(where.app_frame)}"
        if where.stuck_in is not None:
            head += f", stuck in {cls.describe(where.stuck_in)}"
        lines = [head]
        if where.entry is not None and where.entry != where.stuck_in:
            lines.append(f"  the app called {cls.describe(where.entry)}")
        if block is None:
            lines.append(
                "  no stack sampled: the watchdog thread did not run while the loop was "
                "blocked (C code holding the GIL, or a starved machine)"
            )
        elif not stacks:
            lines.append("  no stack sampled: the loop recovered as the watchdog looked")
        if block is not None and block.held_off > max(HELD_OFF_NOTE, self._threshold):
            # The thread woke on time but could not take the GIL until now.
            lines.append(
                f"  the watchdog could not run for {block.held_off:.3f} s of it: the loop "
                "thread probably held the GIL (C code that does not release it), or the "
                "machine was starved of CPU; the samples show where it was afterwards"
            )
        if block is not None and stacks:
            samples = block.stacks.samples + block.other_samples
            n = len(block.stacks)
            lines.append(f"  {counted(samples, 'sample')}, {counted(n, 'distinct stack')}")
            others = [r for r, _ in block.running.most_common()[1:]]
            if others:
                lines.append("  also running: " + "; ".join(r.describe() for r in others[:5]))
        if suppressed_before:
            lines.append(f"  {suppressed_before} block reports suppressed since the last one")
        for i, (stack, count) in enumerate(stacks[:MAX_STACKS_SHOWN], 1):
            lines.append(
                f"  stack {i} of {len(stacks)} ({counted(count, 'sample')}), app frames marked >, "
                "most recent call last:"
            )
            lines.extend(format_stack(stack, cls))
        if len(stacks) > MAX_STACKS_SHOWN:
            lines.append(f"  ... {len(stacks) - MAX_STACKS_SHOWN} more distinct stacks")

        payload: dict[str, Any] = {
            "duration": duration,
            "method": running.method if running else None,
            "path": running.path if running else None,
            "request_id": running.request_id if running else None,
            "task": running.task if running else None,
            "app_frame": show(where.app_frame),
            "entry": show(where.entry),
            "stuck_in": show(where.stuck_in),
            "samples": block.stacks.samples + block.other_samples if block else 0,
            "held_off": block.held_off if block else None,
            "suppressed_before": suppressed_before,
            "stacks": self._stacks_payload(stacks),
        }
        return "\n".join(lines), payload
