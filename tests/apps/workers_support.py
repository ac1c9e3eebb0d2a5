"""Helpers for the supervisor tests: read a server's log as it comes, and load it.

LogTail(stream)      a thread collecting lines; wait_for(pattern) blocks until one matches
Load(url, threads)   a few threads with httpx clients, requesting until stopped; counts
                     successes and keeps every failure (no failure may go unseen)
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import httpx


class LogTail:
    """Collect the lines of `stream` on a thread; wait for the ones a test expects."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True, name="log-tail")
        self._thread.start()

    def _run(self, stream: IO[str]) -> None:
        for line in stream:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def mark(self) -> int:
        """Position to search from, for waits that must only see later lines."""
        with self._cond:
            return len(self.lines)

    def wait_for(self, pattern: str, timeout: float = 15.0, start: int = 0) -> re.Match[str]:
        """The first line from `start` on that matches `pattern` (re.search)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        index = start
        with self._cond:
            while True:
                while index < len(self.lines):
                    match = regex.search(self.lines[index])
                    if match:
                        return match
                    index += 1
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise AssertionError(
                        f"no log line matched {pattern!r} within {timeout}s; log so far:\n"
                        + "\n".join(self.lines[-60:])
                    )
                self._cond.wait(left)

    def wait_all(
        self, pattern: str, count: int, timeout: float = 15.0, start: int = 0
    ) -> list[re.Match[str]]:
        """`count` distinct matching lines from `start` on."""
        found: list[re.Match[str]] = []
        index = start
        deadline = time.monotonic() + timeout
        while len(found) < count:
            match = self.wait_for(pattern, max(0.01, deadline - time.monotonic()), index)
            found.append(match)
            index = self.lines.index(match.string, index) + 1
        return found

    def text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def join(self, timeout: float = 10.0) -> None:
        self._thread.join(timeout)


class Load:
    """`threads` clients requesting `path` in a loop until stopped (or `limit` seconds)."""

    def __init__(
        self, url: str, threads: int = 3, path: str = "/", limit: float = 60.0, keepalive: bool = True
    ) -> None:
        self.url = url
        self.path = path
        self.ok = 0
        self.failures: list[str] = []
        self.pids: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._limit = limit
        self._keepalive = keepalive
        self._progress = threading.Condition(self._lock)
        self._threads = [
            threading.Thread(target=self._run, daemon=True, name=f"load-{i}") for i in range(threads)
        ]

    def start(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def _run(self) -> None:
        limits = httpx.Limits(max_keepalive_connections=1 if self._keepalive else 0)
        deadline = time.monotonic() + self._limit
        with httpx.Client(base_url=self.url, timeout=30.0, limits=limits) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    response = client.get(self.path)
                    ok = response.status_code == 200
                    detail = f"status {response.status_code}"
                    pid = int(response.text) if ok else 0
                except Exception as exc:
                    ok, detail, pid = False, repr(exc), 0
                with self._lock:
                    if ok:
                        self.ok += 1
                        self.pids[pid] += 1
                    else:
                        self.failures.append(detail)
                    self._progress.notify_all()

    def wait_ok(self, count: int, timeout: float = 15.0) -> None:
        """Until `count` more requests than now have succeeded."""
        deadline = time.monotonic() + timeout
        with self._lock:
            target = self.ok + count
            while self.ok < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"load made no progress: {self.ok} ok, failures {self.failures[:5]}")
                self._progress.wait(left)

    def wait_pid(self, pid: int, timeout: float = 15.0) -> None:
        """Until a response from worker `pid` has arrived."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while pid not in self.pids:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no response from worker {pid}; seen {dict(self.pids)}")
                self._progress.wait(left)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=40)
        assert not any(t.is_alive() for t in self._threads), "load threads did not stop"


@contextmanager
def load(url: str, **options: Any) -> Iterator[Load]:
    running = Load(url, **options).start()
    try:
        yield running
    finally:
        running.stop()
