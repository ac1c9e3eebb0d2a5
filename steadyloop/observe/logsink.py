"""Writing log bytes to a file descriptor without tearing lines.

Several worker processes usually share one stdout pipe. POSIX makes a
write() of at most PIPE_BUF bytes to a pipe atomic: it never interleaves with
another writer's data. So a sink groups whole records into writes of at most
PIPE_BUF bytes. A record longer than that cannot be written atomically; for
pipes every write is done under a POSIX record lock on the pipe (lockf), which
every steadyloop process honours, so a long record is never split by another
steadyloop process. (POSIX locks belong to the process, so forked workers that
share one open pipe still exclude each other.)

A write error (a full disk, a reader that went away) does not break a sink for
good: the records of that write are counted as lost, and so is everything the
sink gets for a back-off interval (0.1 s, doubling up to 5 s); then it tries
again. When a write works again, `recovered` says what failed and how many
records were lost meanwhile, for the writer to say once.

Only the writer thread calls these functions, so they may block. Nothing here
ever sets O_NONBLOCK on a descriptor it did not open itself: stdio flags are
shared with print() and with every process that inherited the descriptor.
"""

from __future__ import annotations

import fcntl
import os
import select
import socket
import stat
import time

PIPE_BUF: int = getattr(select, "PIPE_BUF", 512)

# Pending bytes are written out once this much has accumulated, so one huge
# batch does not sit in memory twice.
FLUSH_AT = 64 * 1024

# After a write error, the sink waits this long before it tries again, doubling per failed
# try up to RETRY_MAX: a full disk is not hammered with a write per record.
RETRY_FIRST = 0.1
RETRY_MAX = 5.0


class FdSink:
    """Collects encoded records for one descriptor and writes them in atomic chunks.

    Each record comes with the sequence number of the queue entry it belongs
    to, so the writer can tell exactly which entries are fully written while a
    write is stuck (`first_pending`).
    """

    def __init__(self, fd: int, encoding: str) -> None:
        self.fd = fd
        self.encoding = encoding
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            mode = 0
        self.is_pipe = stat.S_ISFIFO(mode)
        self._lockable = self.is_pipe
        self._parts: list[bytes] = []
        self._seqs: list[int] = []
        self._size = 0
        self._next = 0  # index of the first part not yet written, while flushing
        self.error: OSError | None = None  # the write error of the failure in progress, if any
        self.lost_while_failing = 0  # records lost since `error` began
        # Set when writes work again after a failure: (what failed, records lost meanwhile).
        # The writer reads and clears it.
        self.recovered: tuple[OSError, int] | None = None
        self._backoff = 0.0
        self._retry_at = 0.0
        self.abandoned = False  # set from another thread: stop writing, the process is leaving

    def add(self, data: bytes, seq: int = 0) -> int:
        """Queue one record's bytes; returns how many records were lost to a write error."""
        self._parts.append(data)
        self._seqs.append(seq)
        self._size += len(data)
        if self._size >= FLUSH_AT:
            return self.flush()
        return 0

    def first_pending(self) -> int | None:
        """Sequence number of the oldest record not yet written, or None. Any thread."""
        try:
            return self._seqs[self._next]
        except IndexError:
            return None

    def flush(self) -> int:
        """Write everything pending. Returns the number of records that could not be written."""
        parts = self._parts
        if not parts:
            return 0
        unwritten = len(parts)
        failing = self.error
        try:
            if failing is None or time.monotonic() >= self._retry_at:
                start = 0
                size = 0
                for i, part in enumerate(parts):
                    if i > start and size + len(part) > PIPE_BUF:
                        self._write_parts(parts, start, i)
                        start, size = i, 0
                    size += len(part)
                self._write_parts(parts, start, len(parts))
                unwritten = 0
                if failing is not None:
                    self.recovered = (failing, self.lost_while_failing)
                    self.error, self.lost_while_failing, self._backoff = None, 0, 0.0
        except OSError as exc:
            self.error = exc
            self._backoff = min(RETRY_MAX, self._backoff * 2) if self._backoff else RETRY_FIRST
            self._retry_at = time.monotonic() + self._backoff
            unwritten = len(parts) - self._next
        except _Abandoned:
            unwritten = len(parts) - self._next
        finally:
            self._parts, self._seqs, self._size, self._next = [], [], 0, 0
        if self.error is not None:
            self.lost_while_failing += unwritten
        return unwritten

    def _write_parts(self, parts: list[bytes], start: int, end: int) -> None:
        if self.abandoned:
            raise _Abandoned
        self._write(parts[start] if end - start == 1 else b"".join(parts[start:end]))
        self._next = end

    def _write(self, data: bytes) -> None:
        locked = self._lock()
        try:
            view = memoryview(data)
            while view:
                try:
                    n = os.write(self.fd, view)
                except BlockingIOError:
                    # Someone else made the shared description non-blocking (some
                    # parent processes do). Wait for room as a blocking write would.
                    select.select([], [self.fd], [])
                    continue
                view = view[n:]
        finally:
            if locked:
                self._unlock()

    def _lock(self) -> bool:
        if not self._lockable:
            return False
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX)
        except OSError:
            # Some descriptors refuse record locks; small writes stay atomic anyway.
            self._lockable = False
            return False
        return True

    def _unlock(self) -> None:
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)
        except OSError:
            self._lockable = False


class _Abandoned(Exception):
    pass


def write_without_blocking(fd: int, text: str) -> bool:
    """Best effort: put `text` on `fd` now, or give up at once if that would block.

    Used for the last words of a process (records that could not be drained),
    when the normal path is known to be stuck. The descriptor's own flags are
    left alone: a pipe or terminal is reopened through /proc as a new open file
    description that can be non-blocking on its own; a socket is sent to with
    MSG_DONTWAIT; a regular file does not block.
    """
    data = text.encode("utf-8", "backslashreplace")
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    try:
        if stat.S_ISREG(mode):
            os.write(fd, data)
            return True
        if stat.S_ISSOCK(mode):
            with socket.socket(fileno=os.dup(fd)) as sock:
                sock.send(data, socket.MSG_DONTWAIT)
            return True
        path = f"/proc/self/fd/{fd}"
        alt = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_APPEND | os.O_CLOEXEC)
        try:
            os.write(alt, data)
        finally:
            os.close(alt)
        return True
    except OSError:  # EAGAIN (still full), ENXIO (no reader), EPIPE: nothing more to try
        return False
