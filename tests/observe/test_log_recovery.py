"""A log sink that fails (full disk, reader gone) and then works again, on real descriptors.

/dev/full answers every write with ENOSPC, as a full disk does; "space returns" when a
regular file is dup2()ed onto the same descriptor number, which is what the handler's stream
writes to. A pipe whose reader is closed gives EPIPE until a new pipe takes its place.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from steadyloop.observe.logqueue import Entry
from steadyloop.observe.logsink import FdSink
from steadyloop.observe.logwriter import Writer
from tests.conftest import wait_until


@pytest.fixture
def full_disk_fd() -> Iterator[int]:
    fd = os.open("/dev/full", os.O_WRONLY)
    yield fd
    with contextlib.suppress(OSError):
        os.close(fd)


def _space_returns(fd: int, path: Path) -> None:
    good = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(good, fd)
    os.close(good)


def test_sink_retries_after_enospc_and_counts_what_was_lost(full_disk_fd: int, tmp_path: Path) -> None:
    sink = FdSink(full_disk_fd, "utf-8")
    for i in range(3):
        sink.add(b"lost %d\n" % i, i)
    assert sink.flush() == 3
    assert sink.error is not None and sink.error.errno == errno.ENOSPC
    # While it is failing, records are counted, not written (no write storm on a full disk).
    sink.add(b"lost too\n")
    assert sink.flush() == 1
    log = tmp_path / "log"
    _space_returns(full_disk_fd, log)

    def written_again() -> bool:
        sink.add(b"back\n")
        sink.flush()
        return sink.error is None

    wait_until(written_again, timeout=15, interval=0.05)
    assert sink.recovered is not None
    error, lost = sink.recovered
    assert error.errno == errno.ENOSPC and lost >= 4
    assert log.read_bytes().endswith(b"back\n")


def test_sink_backs_off_between_retries(full_disk_fd: int) -> None:
    sink = FdSink(full_disk_fd, "utf-8")
    attempts = 0
    real_write = sink._write

    def counting(data: bytes) -> None:
        nonlocal attempts
        attempts += 1
        real_write(data)

    sink._write = counting  # type: ignore[method-assign]
    for _ in range(1000):
        sink.add(b"x\n")
        sink.flush()
    assert attempts < 5, "a failing sink must not be hammered on every record"


def _entry(handler: logging.Handler, message: str) -> Entry:
    record = logging.LogRecord("app", logging.INFO, __file__, 1, message, None, None)
    return (handler, record, 100)


def test_writer_says_once_when_writing_works_again(full_disk_fd: int, tmp_path: Path) -> None:
    stream = open(full_disk_fd, "w", closefd=False)  # noqa: SIM115 -- closed below
    handler = logging.StreamHandler(stream)
    writer = Writer()
    try:
        assert writer.write([_entry(handler, f"during {i}") for i in range(5)]) == 5
        log = tmp_path / "log"
        _space_returns(full_disk_fd, log)
        lost = 0

        def recovered() -> bool:
            nonlocal lost
            lost += writer.write([_entry(handler, "after")])
            return b"after" in log.read_bytes()

        wait_until(recovered, timeout=15, interval=0.05)
        writer.write([_entry(handler, "later")])
    finally:
        stream.close()
    lines = log.read_text().splitlines()
    notices = [line for line in lines if "work again" in line]
    assert len(notices) == 1, lines
    assert f"{5 + lost} log records were lost" in notices[0], notices
    assert "No space left on device" in notices[0]
    assert lines[-1] == "later"


def test_writer_recovers_from_a_pipe_whose_reader_came_back(tmp_path: Path) -> None:
    r, w = os.pipe()
    os.close(r)  # the reader is gone: EPIPE
    stream = open(w, "w", closefd=False)  # noqa: SIM115 -- closed below
    handler = logging.StreamHandler(stream)
    writer = Writer()
    new_r = -1
    try:
        assert writer.write([_entry(handler, "into the void")]) == 1
        new_r, new_w = os.pipe()
        os.dup2(new_w, w)  # a new reader behind the same descriptor
        os.close(new_w)
        os.set_blocking(new_r, False)
        got = b""

        def reader_gets_it() -> bool:
            nonlocal got
            writer.write([_entry(handler, "hello again")])
            with contextlib.suppress(BlockingIOError):
                got += os.read(new_r, 65536)
            return b"hello again" in got

        wait_until(reader_gets_it, timeout=15, interval=0.05)
        assert b"work again" in got
    finally:
        stream.close()
        os.close(w)
        if new_r >= 0:
            os.close(new_r)
