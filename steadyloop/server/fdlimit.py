"""Noticing that the process has run out of file descriptors, and saying so.

Where accept() fails for want of a descriptor depends on the loop:

- asyncio's selector loop catches EMFILE/ENFILE in its accept loop, reports it through
  the loop's exception handler ("socket.accept() out of system resource") and stops
  accepting on that socket for a second. (CPython 3.11 keeps going round its accept loop
  after that, so one readiness of the socket gives up to --backlog reports, each with a
  retry timer; a retry that fires after the server closed fails on the closed socket.
  Reports of one loop turn count once, and those late retries are not news.)
- uvloop (libuv) keeps a spare descriptor for this: it closes the spare, accepts and
  immediately closes every pending connection, and reopens the spare -- the clients see
  a closed connection and nobody is told.

So the server hears it from the exception handler under asyncio, and under both loops
probes once per housekeeping tick whether one more descriptor can be had. Each is
counted; a report (rate-limited) names the limit and what to raise.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
from typing import Any

from steadyloop.observe.ratelimit import TokenBucket

logger = logging.getLogger("steadyloop.error")

_EXHAUSTED = (errno.EMFILE, errno.ENFILE)
REPORT_BURST = 1
REPORT_INTERVAL = 30.0  # seconds between reports while it lasts


class DescriptorWatch:
    """Counts and reports running out of file descriptors. Loop thread only."""

    def __init__(self) -> None:
        self.exhausted = 0  # loop turns with failed accepts, plus ticks without a free descriptor
        self._reports = TokenBucket(REPORT_BURST, REPORT_INTERVAL)
        self._turn_noted = False

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Take the loop's accept failures; every other report goes where it went before."""
        previous = loop.get_exception_handler()

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            exc = context.get("exception")
            if isinstance(exc, OSError) and exc.errno in _EXHAUSTED:
                if not self._turn_noted:
                    self._turn_noted = True
                    loop.call_soon(self._next_turn)
                    self.note(exc.errno)
            elif isinstance(exc, ValueError) and _is_accept_retry(context.get("handle")):
                pass  # asyncio's retry timer for a socket the server has closed since
            elif previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handler)

    def _next_turn(self) -> None:
        self._turn_noted = False

    def probe(self) -> None:
        """One more descriptor, opened and closed at once: none means we are at the limit."""
        try:
            fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno in _EXHAUSTED:
                self.note(exc.errno)
            return
        os.close(fd)

    def note(self, code: int) -> None:
        self.exhausted += 1
        if not self._reports.take():
            return
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if code == errno.ENFILE:
            where = "the system-wide limit (fs.file-max) is reached"
        else:
            where = f"RLIMIT_NOFILE is {soft} (hard limit {_limit(hard)})"
        times = "time" if self.exhausted == 1 else "times"
        logger.error(
            "out of file descriptors: new connections are being refused; %s; raise it "
            "(ulimit -n, LimitNOFILE= in systemd) or lower --limit-concurrency "
            "(%d %s so far)",
            where,
            self.exhausted,
            times,
        )


def _is_accept_retry(handle: object) -> bool:
    callback = getattr(handle, "_callback", None)  # asyncio.Handle keeps it private
    return getattr(callback, "__name__", "") == "_start_serving"


def _limit(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else str(value)
