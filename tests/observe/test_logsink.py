"""FdSink chunking and the last-words writer, on real pipes and files."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator

import pytest

from steadyloop.observe.logsink import PIPE_BUF, FdSink, write_without_blocking


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        with contextlib.suppress(OSError):
            os.close(fd)


class SpyWrites:
    """Records the size of every os.write() a sink makes (the syscall itself is real)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: list[int] = []
        real = os.write

        def spy(fd: int, data: bytes | memoryview) -> int:
            n = real(fd, data)
            self.sizes.append(n)
            return n

        monkeypatch.setattr(os, "write", spy)


def drain(fd: int) -> bytes:
    os.set_blocking(fd, False)  # our own test pipe's read end, not stdio
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_small_records_are_grouped_into_writes_of_at_most_pipe_buf(
    pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    r, w = pipe
    sink = FdSink(w, "utf-8")
    assert sink.is_pipe
    spy = SpyWrites(monkeypatch)
    records = [f"record {i:04d} {'x' * (i % 50)}\n".encode() for i in range(300)]
    for i, rec in enumerate(records):
        sink.add(rec, i)
    assert sink.first_pending() == 0
    assert sink.flush() == 0
    assert sink.first_pending() is None
    assert all(size <= PIPE_BUF for size in spy.sizes)
    assert len(spy.sizes) < 20
    assert drain(r) == b"".join(records)


def test_a_record_is_never_split_across_writes(
    pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    r, w = pipe
    sink = FdSink(w, "utf-8")
    spy = SpyWrites(monkeypatch)
    records = [b"a" * 3000 + b"\n", b"b" * 3000 + b"\n", b"c" * 10 + b"\n"]
    for rec in records:
        sink.add(rec)
    sink.flush()
    assert spy.sizes == [3001, 3012]
    assert drain(r) == b"".join(records)


def test_long_record_is_written_whole_under_the_pipe_lock(pipe: tuple[int, int]) -> None:
    r, w = pipe
    sink = FdSink(w, "utf-8")
    big = b"z" * 200_000 + b"\n"
    # Another process holding the lock would keep us out; here we only check the
    # lock is taken and released (lockf from this process would succeed anyway).
    result: list[int] = []
    writer = threading.Thread(target=lambda: result.append(sink.add(big) + sink.flush()))
    writer.start()
    got = b""
    deadline = time.monotonic() + 10
    while len(got) < len(big) and time.monotonic() < deadline:
        got += os.read(r, 65536)
    writer.join(10)
    assert result == [0]
    assert got == big
    fcntl.lockf(w, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released


def test_write_error_counts_the_records_and_breaks_the_sink(pipe: tuple[int, int]) -> None:
    r, w = pipe
    os.close(r)  # nobody will ever read: EPIPE
    sink = FdSink(w, "utf-8")
    for i in range(5):
        sink.add(b"x\n", i)
    assert sink.flush() == 5
    assert isinstance(sink.error, BrokenPipeError)
    sink.add(b"y\n")
    assert sink.flush() == 1


def test_regular_file_sink(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "log")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        sink = FdSink(fd, "utf-8")
        assert not sink.is_pipe
        for i in range(1000):
            sink.add(f"{i}\n".encode())
        assert sink.flush() == 0
    finally:
        os.close(fd)
    with open(path) as f:
        assert f.read().split() == [str(i) for i in range(1000)]


def test_write_without_blocking_gives_up_on_a_full_pipe(pipe: tuple[int, int]) -> None:
    _r, w = pipe
    # Fill the pipe through a second, non-blocking description; w itself stays blocking.
    filler = os.open(f"/proc/self/fd/{w}", os.O_WRONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(BlockingIOError):
            while True:
                os.write(filler, b"f" * 65536)
    finally:
        os.close(filler)
    started = time.monotonic()
    assert write_without_blocking(w, "last words\n") is False
    assert time.monotonic() - started < 1
    assert os.get_blocking(w), "the descriptor's own flags must not change"


def test_write_without_blocking_writes_when_there_is_room(pipe: tuple[int, int]) -> None:
    r, w = pipe
    assert write_without_blocking(w, "last words\n") is True
    assert os.read(r, 100) == b"last words\n"
    assert os.get_blocking(w)
