"""The watchdog's process-level parts, with real processes and real signals:
the faulthandler backstop, the on-demand dump signal, and the heartbeat slot a
parent reads after fork."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from steadyloop.config import WatchdogOptions
from steadyloop.observe.heartbeat import Heartbeat
from steadyloop.observe.watchdog import DUMP_SIGNAL, Watchdog

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = """
import asyncio, logging, sys, time
from steadyloop.config import WatchdogOptions
from steadyloop.observe.watchdog import Watchdog

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")

def hang_here():
    print("ready", flush=True)  # from in here, so a dump from now on shows this frame
    time.sleep(60)

async def main():
    options = WatchdogOptions(block_threshold=0.1, block_dump_after=float(sys.argv[1]))
    Watchdog(asyncio.get_running_loop(), options).start()
    await asyncio.sleep(0.05)
    hang_here()

asyncio.run(main())
"""


@pytest.fixture
def child() -> Iterator[Callable[[float], subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(dump_after: float) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": REPO}
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(dump_after)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            assert proc.stdout is not None and proc.stderr is not None
            proc.stdout.close()
            proc.stderr.close()


def read_until(fd: int, want: Callable[[bytes], bool], timeout: float = 15.0) -> bytes:
    """Read from a pipe until `want(everything read)` is true, or fail at the deadline."""
    got = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while not want(got):
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; read so far:\n{got.decode(errors='replace')}"
            if sel.select(left):
                chunk = os.read(fd, 65536)
                assert chunk, f"EOF; read so far:\n{got.decode(errors='replace')}"
                got += chunk
    return got


def test_hard_hang_dumps_every_thread_after_block_dump_after(
    child: Callable[[float], subprocess.Popen[bytes]],
) -> None:
    proc = child(0.5)
    assert proc.stdout is not None and proc.stderr is not None
    read_until(proc.stdout.fileno(), lambda b: b"ready" in b)
    started = time.monotonic()
    err = read_until(
        proc.stderr.fileno(),
        lambda b: b"Timeout" in b and b"in hang_here" in b.split(b"Timeout")[1],
    )
    # Fired after block_dump_after, within the re-arm slack (with room for a slow machine).
    assert time.monotonic() - started < 10
    text = err.decode()
    assert "event loop still blocked after 0.5 s" in text and "in hang_here" in text
    assert "Thread 0x" in text.split("Timeout")[1]
    assert proc.poll() is None  # a dump, not a kill: the supervisor decides about killing


@pytest.mark.skipif(DUMP_SIGNAL is None, reason="no SIGUSR2 on this platform")
def test_dump_signal_dumps_stacks_and_the_worker_lives_on(
    child: Callable[[float], subprocess.Popen[bytes]],
) -> None:
    assert DUMP_SIGNAL == signal.SIGUSR2
    proc = child(0.0)  # no backstop: only the signal can dump
    assert proc.stdout is not None and proc.stderr is not None
    read_until(proc.stdout.fileno(), lambda b: b"ready" in b)
    for _ in range(2):
        proc.send_signal(signal.SIGUSR2)
        # faulthandler writes a dump in many small writes: read this one to its end (the main
        # thread's outermost frame) so that the next round reads only the next dump.
        err = read_until(
            proc.stderr.fileno(),
            lambda b: b"in hang_here" in b and b"in <module>" in b.split(b"in hang_here")[-1],
        )
        assert b"Current thread 0x" in err or b"Thread 0x" in err
        assert proc.poll() is None


def _worker(hb: Heartbeat, block_r: int) -> None:
    """A forked worker: a loop with a heartbeat-only watchdog; blocks when told to."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        Watchdog(loop, WatchdogOptions(block_threshold=0.0), heartbeat=hb).start()
        loop.add_reader(block_r, time.sleep, 60)  # the loop itself blocks
        await asyncio.Event().wait()

    asyncio.run(main())


def test_parent_reads_the_heartbeat_of_a_forked_worker_and_sees_it_stop() -> None:
    hb = Heartbeat()
    block_r, block_w = os.pipe()
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=_worker, args=(hb, block_r), daemon=True)
    proc.start()
    try:
        deadline = time.monotonic() + 10
        while (age := hb.age()) is None or age > 0.5:  # booting: not stamped yet
            assert time.monotonic() < deadline, "the worker never stamped its heartbeat"
            assert proc.is_alive()
            proc.join(0.02)  # waits on the process sentinel, returns early if it dies
        os.write(block_w, b"x")  # the worker's loop blocks now
        while (age := hb.age()) is None or age < 1.0:
            assert time.monotonic() < deadline, "the heartbeat went on while the loop was blocked"
            proc.join(0.05)
        assert proc.is_alive()  # stuck, not dead: exactly what --worker-timeout is for
    finally:
        proc.kill()
        proc.join(10)
        os.close(block_r)
        os.close(block_w)
        hb.close()


def test_heartbeat_slot_basics() -> None:
    hb = Heartbeat()
    assert hb.last() == 0.0 and hb.age() is None
    hb.stamp(100.0)
    assert hb.last() == 100.0 and hb.age(now=101.5) == 1.5
    hb.close()
    hb.close()
    assert hb.last() == 0.0
