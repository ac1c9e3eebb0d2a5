"""Descriptors 0, 1 and 2 made valid before the server opens any descriptor of its own.

A process started with stdin, stdout or stderr closed (`cmd <&- >&-`, some daemon
managers) hands those numbers to the next descriptors it opens: libuv's epoll instance or a
listening socket then sits on fd 0 or 1, where any `print()` or log line lands in it, and
libuv aborts when it closes one (`uv__close: Assertion 'fd > STDERR_FILENO' failed`).
Python itself leaves `sys.stdout` (or its sibling) as None, which breaks every flush.
Daemons open /dev/null on the missing ones first thing; so do we.
"""

from __future__ import annotations

import os
import sys


def ensure_standard_fds() -> None:
    """Open /dev/null on whichever of fds 0-2 is closed, and give Python streams for them."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            # The lowest free number is this one: the ones below it are valid by now.
            opened = os.open(os.devnull, os.O_RDWR)
            if opened != fd:
                os.dup2(opened, fd)  # inheritable, as a standard descriptor must be
                os.close(opened)
            else:
                os.set_inheritable(fd, True)
    if sys.stdin is None:
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 -- lives as long as the process
    if sys.stdout is None:
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    if sys.stderr is None:
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
