"""LogQueue with a real writer thread and a sink we can stall at will."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from steadyloop.observe.logqueue import CLOSED, FAILED, Entry, LogQueue

INFO, WARNING = logging.INFO, logging.WARNING


class StallingWriter:
    """A BatchWriter whose sink can be blocked (like a full pipe) and released."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.open.set()
        self.entered = threading.Event()  # the writer thread is inside write()
        self.written: list[Any] = []
        self.notices: list[tuple[Any, str]] = []
        self.changed = threading.Condition()

    def write(self, entries: list[Entry]) -> int:
        self.entered.set()
        self.open.wait()
        with self.changed:
            self.written.extend(payload for _, payload, _ in entries)
            self.changed.notify_all()
        return 0

    def write_notice(self, target: Any, message: str) -> None:
        with self.changed:
            self.notices.append((target, message))
            self.changed.notify_all()

    def progress(self) -> int:
        return 0  # a stalled write() here is all or nothing

    def abandon(self) -> None:
        pass

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        with self.changed:
            assert self.changed.wait_for(predicate, timeout), "condition not reached in time"


@pytest.fixture
def writer() -> Iterator[StallingWriter]:
    w = StallingWriter()
    yield w
    w.open.set()  # never leave a writer thread stuck


def stall(writer: StallingWriter, queue: LogQueue) -> None:
    """Block the sink and make sure the writer thread is stuck inside write()."""
    writer.open.clear()
    writer.entered.clear()
    queue.put("t", "stall", INFO, "INFO", 1)
    assert writer.entered.wait(10)


def test_entries_are_written_in_order(writer: StallingWriter) -> None:
    q = LogQueue(writer, max_records=100_000, max_bytes=10**9)
    q.start()
    for i in range(5000):
        assert q.put("t", i, INFO, "INFO", 10)
    writer.wait_for(lambda: len(writer.written) == 5000)
    assert writer.written == list(range(5000))
    assert q.close(5) == (0, [])
    assert q.state == CLOSED


def test_order_kept_per_thread_with_concurrent_callers(writer: StallingWriter) -> None:
    q = LogQueue(writer, max_records=100_000, max_bytes=10**9)
    q.start()

    def produce(tid: int) -> None:
        for i in range(2000):
            q.put("t", (tid, i), INFO, "INFO", 10)

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.wait_for(lambda: len(writer.written) == 8000)
    for tid in range(4):
        assert [i for t, i in writer.written if t == tid] == list(range(2000))
    q.close(5)


def test_drop_policy_counts_every_dropped_record_and_says_so(writer: StallingWriter) -> None:
    q = LogQueue(writer, max_records=100, max_bytes=10**9)
    q.start()
    stall(writer, q)
    started = time.monotonic()
    for i in range(1000):
        q.put("t", i, INFO, "INFO", 10)
    assert time.monotonic() - started < 1.0, "put() waited although the policy is drop"
    # 90% of the record bound is open to INFO; the stall entry holds one slot.
    assert q.dropped() == {"INFO": 1000 - 89}
    writer.open.set()
    writer.wait_for(lambda: len(writer.notices) == 1)
    assert writer.notices == [
        ("t", "steadyloop: dropped 911 log records (INFO) while the log sink was blocked")
    ]
    writer.wait_for(lambda: len(writer.written) == 90)
    assert writer.written == ["stall", *range(89)]
    q.close(5)


def test_warnings_keep_room_when_info_is_dropped(writer: StallingWriter) -> None:
    q = LogQueue(writer, max_records=100, max_bytes=10**9)
    q.start()
    stall(writer, q)
    for i in range(500):
        q.put("t", ("info", i), INFO, "INFO", 10)
    for i in range(10):
        q.put("t", ("warning", i), WARNING, "WARNING", 10)
    assert q.dropped() == {"INFO": 500 - 89}
    writer.open.set()
    writer.wait_for(lambda: len(writer.written) == 100)
    assert [p for p in writer.written if p[0] == "warning"] == [("warning", i) for i in range(10)]
    q.close(5)


def test_byte_bound_drops_too(writer: StallingWriter) -> None:
    q = LogQueue(writer, max_records=100_000, max_bytes=10_000)
    q.start()
    stall(writer, q)  # 1 byte
    for i in range(100):
        q.put("t", i, INFO, "INFO", 1000)
    # INFO may use 9000 bytes: 8 more entries of 1000 bytes fit next to the 1-byte stall entry.
    assert q.dropped() == {"INFO": 92}
    writer.open.set()
    q.close(5)


def test_drops_are_counted_per_target_and_level(writer: StallingWriter) -> None:
    q = LogQueue(writer, max_records=10, max_bytes=10**9)
    q.start()
    stall(writer, q)
    for i in range(50):
        q.put("a", i, INFO, "INFO", 1)
        q.put("b", i, logging.DEBUG, "DEBUG", 1)
    assert q.dropped() == {"INFO": 46, "DEBUG": 46}
    writer.open.set()
    writer.wait_for(lambda: len(writer.notices) == 2)
    assert sorted(writer.notices) == [
        ("a", "steadyloop: dropped 46 log records (INFO) while the log sink was blocked"),
        ("b", "steadyloop: dropped 46 log records (DEBUG) while the log sink was blocked"),
    ]
    q.close(5)


def test_block_policy_waits_for_room_and_loses_nothing(writer: StallingWriter) -> None:
    q = LogQueue(writer, max_records=20, max_bytes=10**9, overflow="block")
    q.start()
    stall(writer, q)
    done = threading.Event()

    def produce() -> None:
        for i in range(200):
            q.put("t", i, INFO, "INFO", 1)
        done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    # With the sink stalled the producer must be held back, not dropped.
    assert not done.wait(0.5)
    assert q.pending() <= 20
    writer.open.set()
    assert done.wait(10)
    producer.join()
    writer.wait_for(lambda: len(writer.written) == 201)
    assert writer.written == ["stall", *range(200)]
    assert q.dropped() == {}
    q.close(5)


def test_close_drains_everything_within_the_deadline(writer: StallingWriter) -> None:
    q = LogQueue(writer, max_records=100_000, max_bytes=10**9)
    q.start()
    stall(writer, q)
    for i in range(3000):
        q.put("t", i, INFO, "INFO", 1)
    release = threading.Timer(0.2, writer.open.set)  # the sink recovers while close() waits
    release.start()
    assert q.close(10) == (0, [])
    release.join()
    assert writer.written == ["stall", *range(3000)]
    # After a full drain, callers write for themselves.
    assert q.put("t", "late", INFO, "INFO", 1) is False


def test_close_counts_what_could_not_be_written(writer: StallingWriter) -> None:
    q = LogQueue(writer, max_records=100, max_bytes=10**9)
    q.start()
    stall(writer, q)
    for i in range(200):
        q.put("t", i, INFO, "INFO", 1)
    started = time.monotonic()
    undelivered, notices = q.close(0.3)
    assert time.monotonic() - started < 3
    assert undelivered == 90  # the stall entry and 89 queued INFO records
    assert notices == ["steadyloop: dropped 111 log records (INFO) while the log sink was blocked"]
    assert q.state == FAILED
    # Later records are counted, not written: the sink is stuck.
    assert q.put("t", "late", INFO, "INFO", 1) is True
    assert q.dropped() == {"INFO": 112}


def test_writer_thread_never_blocks_on_its_own_queue(writer: StallingWriter) -> None:
    q = LogQueue(writer, max_records=10, max_bytes=10**9, overflow="block")
    q.start()
    for i in range(10):
        q.put("t", i, INFO, "INFO", 1)
    result: list[bool] = []
    original = writer.write

    def write_and_log(entries: list[Entry]) -> int:
        # A handler that logs while the writer thread is in it (urllib3 in an HTTPHandler...).
        if any(payload == "wake" for _, payload, _ in entries):
            for _ in range(50):
                result.append(q.put("t", "from-writer", INFO, "INFO", 1))
        return original(entries)

    writer.write = write_and_log  # type: ignore[method-assign]
    q.put("t", "wake", INFO, "INFO", 1)
    assert q.close(10)[0] == 0
    assert len(result) == 50 and all(result)
    # What did not fit was dropped and counted, never waited for.
    assert writer.written.count("from-writer") + q.dropped().get("INFO", 0) == 50
