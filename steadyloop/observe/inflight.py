"""Which request each running task serves, so a report can name it.

The server registers a task when it starts running the app for a request and
removes it when the task ends. Readers on other threads (the watchdog) look a
task up by identity; plain dict operations are atomic under the GIL, so no
lock is needed and the loop thread never waits.
"""

from __future__ import annotations

from typing import Protocol


class RequestInfo(Protocol):
    """What a report says about a request. The server's request cycle provides it."""

    @property
    def method(self) -> str: ...

    @property
    def path(self) -> str: ...

    @property
    def request_id(self) -> str: ...


# task object -> the request it is running. Keyed by the task itself (identity).
INFLIGHT: dict[object, RequestInfo] = {}
