"""Signals as bytes on a pipe, so the supervisor waits for them with everything else.

A Python signal handler runs between two bytecodes of the main thread; doing
real work there (forking, logging) would re-enter whatever the main thread was
doing. Instead every handled signal is a no-op at Python level, and CPython's
C-level handler writes the signal number into the wakeup pipe
(`signal.set_wakeup_fd`). The supervisor's one `select()` sees the pipe become
readable and reads the numbers in order: no flag polling, no race between
"check the flag" and "go to sleep".
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from types import FrameType
from typing import Any


def _noop(signum: int, frame: FrameType | None) -> None:
    """Only here so the signal is caught; the number arrives through the wakeup pipe."""


class SignalPipe:
    """Catch `signals` and deliver their numbers through a pipe. Main thread only."""

    def __init__(self, signals: Iterable[signal.Signals]) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        self._previous: dict[signal.Signals, Any] = {}
        for sig in signals:
            self._previous[sig] = signal.signal(sig, _noop)
        self._closed = False

    def fileno(self) -> int:
        return self._read

    def fds(self) -> tuple[int, int]:
        """Both ends, for a forked child to close."""
        return self._read, self._write

    def read(self) -> list[signal.Signals]:
        """The signals that arrived since the last read, oldest first; never blocks."""
        received: list[signal.Signals] = []
        while True:
            try:
                data = os.read(self._read, 512)
            except BlockingIOError:
                break
            if not data:
                break
            for number in data:
                try:
                    received.append(signal.Signals(number))
                except ValueError:  # a number we do not know: ignore it
                    continue
        return received

    def close(self) -> None:
        """Restore the previous handlers and wakeup fd. Idempotent."""
        if self._closed:
            return
        self._closed = True
        signal.set_wakeup_fd(self._previous_fd)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        os.close(self._read)
        os.close(self._write)

    @staticmethod
    def reset_in_child(signals: Iterable[signal.Signals], ignore: Iterable[signal.Signals]) -> None:
        """In a forked child: back to default handlers, no wakeup fd; `ignore` ignored."""
        signal.set_wakeup_fd(-1)
        for sig in signals:
            signal.signal(sig, signal.SIG_DFL)
        for sig in ignore:
            signal.signal(sig, signal.SIG_IGN)
