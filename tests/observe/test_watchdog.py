"""The loop watchdog against real event loops (stdlib asyncio and uvloop) in a real thread.

No HTTP server here: a "request" is a task registered in INFLIGHT by hand, the
way the server's request cycle does it. Blocking functions are defined in this
file so that reports must name this file and a line in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from steadyloop.config import WatchdogOptions
from steadyloop.observe.heartbeat import Heartbeat
from steadyloop.observe.inflight import INFLIGHT
from steadyloop.observe.watchdog import Watchdog

T = TypeVar("T")
THIS_FILE = os.path.basename(__file__)


# -- code that blocks the loop: reports must point here ---------------------------


def block_for(seconds: float) -> None:
    time.sleep(seconds)


BLOCK_LINE = block_for.__code__.co_firstlineno + 1


def spin(seconds: float) -> int:
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
    return n


SPIN_LINES = range(spin.__code__.co_firstlineno, spin.__code__.co_firstlineno + 6)


def hold_the_gil(n: int) -> int:
    return sum(range(n))  # one C call: the eval loop never gets to hand the GIL over


def log_something(log: logging.Logger) -> None:
    log.warning("a line for a pipe nobody reads %s", "x" * 200)


LOG_LINE = log_something.__code__.co_firstlineno + 1
GIL_LINE = hold_the_gil.__code__.co_firstlineno + 1


# -- harness ------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeRequest:
    method: str
    path: str
    request_id: str


class Reports(logging.Handler):
    """Records every report of the "steadyloop.watchdog" logger, for a test to wait on."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._cond = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._cond:
            self.records.append(record)
            self._cond.notify_all()

    def blocks(self, path: str | None = None) -> list[dict[str, Any]]:
        with self._cond:
            found = [r.block for r in self.records if hasattr(r, "block")]
        return [b for b in found if path is None or b["path"] == path]

    def wait_for_path(self, path: str, timeout: float = 10.0) -> dict[str, Any]:
        with self._cond:
            ok = self._cond.wait_for(lambda: bool(self.blocks(path)), timeout)
        assert ok, f"no report for {path} within {timeout} s; got {self.blocks()}"
        return self.blocks(path)[0]


@pytest.fixture
def reports() -> Iterator[Reports]:
    handler = Reports()
    log = logging.getLogger("steadyloop.watchdog")
    log.addHandler(handler)
    old_level = log.level
    log.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return loop
    return asyncio.new_event_loop()


class LoopThread:
    """An event loop running forever in its own thread; `call` runs a coroutine on it."""

    def __init__(self, kind: str) -> None:
        self.loop = new_loop(kind)
        self._thread = threading.Thread(target=self.loop.run_forever, name=f"loop-{kind}")
        self._thread.start()

    def call(self, fn: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
        async def wrapper() -> T:
            return await fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        assert not self._thread.is_alive()
        self.loop.close()


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_thread(request: pytest.FixtureRequest) -> Iterator[LoopThread]:
    lt = LoopThread(request.param)
    try:
        yield lt
    finally:
        lt.close()


@contextlib.contextmanager
def running_watchdog(
    lt: LoopThread,
    threshold: float = 0.1,
    dump_after: float = 0.0,
    heartbeat: Heartbeat | None = None,
    **kwargs: Any,
) -> Iterator[Watchdog]:
    kwargs.setdefault("report_burst", 1000)
    options = WatchdogOptions(block_threshold=threshold, block_dump_after=dump_after)
    wd = Watchdog(lt.loop, options, heartbeat, **kwargs)

    async def start() -> None:
        wd.start()

    async def stop() -> None:
        wd.stop()

    lt.call(start)
    try:
        yield wd
    finally:
        lt.call(stop)


async def as_request(path: str, fn: Callable[..., object], *args: object) -> None:
    """Run `fn` inside a task registered as a request, like the server does."""
    task = asyncio.current_task()
    assert task is not None
    INFLIGHT[task] = FakeRequest("GET", path, f"req-{path.strip('/')}")
    try:
        fn(*args)
    finally:
        del INFLIGHT[task]


async def until_beat_after(wd: Watchdog, moment: float) -> None:
    """Let the loop run until it has stamped a heartbeat after `moment`, so that
    the next block is a separate block."""
    deadline = time.monotonic() + 10
    while wd.last_beat <= moment:
        assert time.monotonic() < deadline, "the loop never beat again"
        await asyncio.sleep(0)


def sync_point(lt: LoopThread, wd: Watchdog, reports: Reports) -> None:
    """A block of its own, reported: every earlier block has been handled by then
    (the watchdog handles blocks in order)."""
    # Well over the threshold, so that even a slow-waking thread samples it.
    lt.call(lambda: as_request("/sentinel", block_for, 3 * wd._threshold + 0.1))
    reports.wait_for_path("/sentinel")


# -- tests ----------------------------------------------------------------------------


def test_sleep_in_a_request_gives_one_report_naming_the_line_and_the_request(
    loop_thread: LoopThread, reports: Reports
) -> None:
    with running_watchdog(loop_thread) as wd:
        loop_thread.call(lambda: as_request("/slow", block_for, 0.3))
        block = reports.wait_for_path("/slow")
        sync_point(loop_thread, wd, reports)

    assert len(reports.blocks("/slow")) == 1
    assert 0.3 <= block["duration"] <= 0.5
    assert (block["method"], block["request_id"]) == ("GET", "req-slow")
    assert block["app_frame"].endswith(f"{THIS_FILE}:{BLOCK_LINE} in block_for")
    assert block["app_frame"].startswith(os.path.join("tests", "observe", THIS_FILE))
    assert block["stuck_in"] is None  # time.sleep is C: the app frame is the innermost
    assert block["samples"] >= 1
    top = block["stacks"][0]
    assert top["app"][-1] is True and top["frames"][-1] == block["app_frame"]
    # The library frames around it are not marked as the app's.
    assert not any(app for f, app in zip(top["frames"], top["app"], strict=True) if "asyncio" in f)
    record = next(r for r in reports.records if getattr(r, "block", {}).get("path") == "/slow")
    assert record.levelno == logging.WARNING
    text = record.getMessage()
    assert "event loop blocked for 0." in text and "GET /slow (request req-slow)" in text
    assert f"> tests/observe/{THIS_FILE}:{BLOCK_LINE} in block_for" in text


def test_cpu_bound_loop_is_named(loop_thread: LoopThread, reports: Reports) -> None:
    with running_watchdog(loop_thread):
        loop_thread.call(lambda: as_request("/cpu", spin, 0.4))
        block = reports.wait_for_path("/cpu")

    assert 0.4 <= block["duration"] <= 0.7
    file_line, _, function = block["app_frame"].partition(" in ")
    assert function == "spin"
    assert file_line.rsplit(":", 1)[0].endswith(THIS_FILE)
    assert int(file_line.rsplit(":", 1)[1]) in SPIN_LINES


def test_block_shorter_than_threshold_is_not_reported(loop_thread: LoopThread, reports: Reports) -> None:
    with running_watchdog(loop_thread, threshold=0.2) as wd:
        loop_thread.call(lambda: as_request("/short", block_for, 0.05))
        sync_point(loop_thread, wd, reports)
        assert reports.blocks("/short") == []
    assert wd.blocks >= 1  # the sentinel (and, on a loaded machine, maybe lag of its own)
    assert wd.lag.snapshot()["count"] > 0


def test_block_in_a_plain_callback_says_no_task(loop_thread: LoopThread, reports: Reports) -> None:
    with running_watchdog(loop_thread) as wd:
        done = threading.Event()

        def callback() -> None:
            block_for(0.3)
            done.set()

        loop_thread.loop.call_soon_threadsafe(callback)
        assert done.wait(10)
        sync_point(loop_thread, wd, reports)

    # (Filtered by frame: on a loaded machine the loop may also lag on its own.)
    (block,) = [b for b in reports.blocks() if b["path"] is None and "block_for" in (b["app_frame"] or "")]
    assert block["task"] is None and block["method"] is None
    assert block["app_frame"].endswith(f"{THIS_FILE}:{BLOCK_LINE} in block_for")
    record = next(r for r in reports.records if getattr(r, "block", None) is block)
    assert "a plain loop callback, no task" in record.getMessage()


def test_rate_limit_bounds_reports_and_counts_every_suppressed_block(
    loop_thread: LoopThread, reports: Reports
) -> None:
    burst, interval = 2, 1.0

    async def hundred_blocks() -> None:
        for _ in range(100):
            await as_request("/many", block_for, 0.04)
            await until_beat_after(wd, time.monotonic())

    started = time.monotonic()
    with running_watchdog(loop_thread, threshold=0.02, report_burst=burst, report_interval=interval) as wd:
        loop_thread.call(hundred_blocks, timeout=60)
        elapsed = time.monotonic() - started
    # stop() joined the thread after it handled every block the loop recorded.

    assert wd.blocks >= 100  # a noisy machine may add a block of its own, never lose one
    assert wd.reports + wd.suppressed == wd.blocks
    assert wd.reports == len(reports.blocks())
    assert burst <= wd.reports <= burst + elapsed / interval + 1
    assert wd.suppressed >= 100 - wd.reports
    # Each report says how many were suppressed before it; what is left is pending.
    said = sum(b["suppressed_before"] for b in reports.blocks())
    assert said + wd._pending_suppressed == wd.suppressed
    assert wd.snapshot()["suppressed"] == wd.suppressed


def _full_pipe() -> tuple[int, int]:
    """A pipe whose buffer is full: the next blocking write to it waits for a reader."""
    r, w = os.pipe()
    os.set_blocking(w, False)
    chunk = b"x" * 65536
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(w, chunk)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(w, b"x")
    os.set_blocking(w, True)
    return r, w


def test_blocked_log_handler_names_emit_and_the_app_line(loop_thread: LoopThread, reports: Reports) -> None:
    # The --log-sync picture: a plain StreamHandler writing to stdout, a pipe nobody reads.
    r, w = _full_pipe()
    stream = os.fdopen(w, "w")
    handler = logging.StreamHandler(stream)
    log = logging.getLogger(f"tests.blocked.{id(handler)}")
    log.propagate = False
    log.addHandler(handler)
    drained = threading.Event()

    def drain_when_blocked() -> None:
        deadline = time.monotonic() + 10
        while wd.blocked_since is None and time.monotonic() < deadline:
            drained.wait(0.01)
        while os.read(r, 65536):  # until EOF: the reader comes back
            pass
        drained.set()

    reader = threading.Thread(target=drain_when_blocked)
    try:
        with running_watchdog(loop_thread) as wd:
            reader.start()
            loop_thread.call(lambda: as_request("/log", log_something, log))
            block = reports.wait_for_path("/log")
    finally:
        log.removeHandler(handler)
        stream.close()  # EOF for the reader
        reader.join(10)
        os.close(r)
    assert not reader.is_alive()

    assert block["app_frame"].endswith(f"{THIS_FILE}:{LOG_LINE} in log_something")
    assert block["entry"].startswith("logging/__init__.py:") and "Logger.warning" in block["entry"]
    assert block["stuck_in"].startswith("logging/__init__.py:")
    frames = block["stacks"][0]["frames"]
    assert any(f.startswith("logging/__init__.py:") and f.endswith("StreamHandler.emit") for f in frames)


def test_threshold_zero_starts_no_timer_and_no_thread(loop_thread: LoopThread) -> None:
    before = set(threading.enumerate())
    with running_watchdog(loop_thread, threshold=0.0, dump_after=30.0) as wd:
        assert not wd.enabled
        assert wd._timer is None and wd._thread is None
        assert set(threading.enumerate()) == before
        assert wd.last_beat == 0.0


def test_threshold_zero_still_stamps_a_supervisor_heartbeat(loop_thread: LoopThread) -> None:
    hb = Heartbeat()
    try:
        with running_watchdog(loop_thread, threshold=0.0, heartbeat=hb) as wd:
            assert wd._thread is None
            first = hb.last()
            assert first > 0.0

            async def wait_for_second_stamp() -> None:
                await until_beat_after(wd, first)

            loop_thread.call(wait_for_second_stamp)
            assert hb.last() > first
    finally:
        hb.close()


def test_stop_is_idempotent_and_leaves_no_thread(loop_thread: LoopThread) -> None:
    with running_watchdog(loop_thread) as wd:
        thread = wd._thread
        assert thread is not None and thread.is_alive()
    assert not thread.is_alive()
    wd.stop()


def test_start_outside_the_loop_is_refused(loop_thread: LoopThread) -> None:
    wd = Watchdog(loop_thread.loop, WatchdogOptions())
    with pytest.raises(RuntimeError):
        wd.start()


def test_block_holding_the_gil_is_reported_with_the_line_and_a_note(
    loop_thread: LoopThread, reports: Reports
) -> None:
    # About 0.6 s of a single C call on this machine, whatever its speed today.
    started = time.perf_counter()
    hold_the_gil(2_000_000)
    n = int(2_000_000 * 0.6 / max(time.perf_counter() - started, 1e-6))
    with running_watchdog(loop_thread):
        loop_thread.call(lambda: as_request("/gil", hold_the_gil, n))
        block = reports.wait_for_path("/gil")
    assert block["duration"] >= 0.2
    assert block["held_off"] > 0.1  # the thread woke, but got the GIL only when the call ended
    assert block["app_frame"].endswith(f"{THIS_FILE}:{GIL_LINE} in hold_the_gil")
    record = next(r for r in reports.records if getattr(r, "block", None) is block)
    assert "probably held the GIL" in record.getMessage()


def test_a_second_watchdog_in_the_process_leaves_faulthandler_to_the_first(
    loop_thread: LoopThread,
) -> None:
    from steadyloop.observe import watchdog as module

    other = LoopThread("asyncio")
    try:
        with running_watchdog(loop_thread, dump_after=30.0) as first:
            with running_watchdog(other, dump_after=30.0) as second:
                assert first._owns_faulthandler and first._signal_registered
                assert not second._owns_faulthandler and not second._signal_registered
            assert module._faulthandler_owner is first  # the second's stop() took nothing away
        assert module._faulthandler_owner is None
    finally:
        other.close()
