"""The connection interface: what the server needs from every open connection.

The server (timeouts, shutdown, abort) sees an HTTP/1.1 connection, an
upgraded WebSocket and an HTTP/2 connection alike through these four methods.
They are called on the event loop thread only.
"""

from __future__ import annotations

from typing import Protocol


class Connection(Protocol):
    closing: bool  # going away: no new request or message will be started on it

    def is_idle(self) -> bool:
        """No request or message in progress: closing now loses nothing the peer sent."""
        ...

    def shutdown(self) -> None:
        """Server shutdown: close at once if idle, else after what is in progress."""
        ...

    def check_timeouts(self, now: float) -> None:
        """Housekeeping (every half second): close what has waited too long. `now` is
        time.monotonic() as of this sweep."""
        ...

    def abort(self) -> None:
        """Close now, without goodbyes (the end of a shutdown that ran out of time)."""
        ...
