"""The channel between one WSGI request's thread and its task on the event loop.

The app runs on a pool thread; the socket belongs to the loop. The thread
never touches the connection: it posts response pieces (START, BODY, FILE,
END, ERROR) into this exchange and asks it for request body, and the request's
task on the loop (`pump`) turns them into ASGI `send` and `receive` calls.

Flow control, both ways:

* Response: `post` returns at once while less than `high` bytes are queued or
  being written; beyond that the thread waits until the loop has handed all
  but `low` to the connection. The connection's `send` itself waits while the
  client is not draining, so a slow reader stops the app's iterator, not the
  server's memory. (PEP 3333 allows this: a block is never delayed, it is
  handed to the loop, which keeps transmitting while the app makes the next.)
* Request body: the thread asks for the next chunk only when the app reads
  (`wsgi.input`), and the loop calls `receive()` only then; the connection
  stops reading from the socket while unread body piles up.

The thread wakes the loop with `call_soon_threadsafe` only when the loop task
is idle and there is something it can act on; a START alone waits for the body
that follows it, so a small response costs one wake-up and goes out with a
Content-Length. The lock is held only for list and counter updates.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any, Final

from steadyloop.asgi.types import Receive, Send

START: Final = 0  # (status, headers)
BODY: Final = 1  # bytes
FILE: Final = 2  # a path: the rest of the response is this file, sent with sendfile
END: Final = 3  # None
ERROR: Final = 4  # the app's exception, raised in the request's task

HIGH_WATER = 128 * 1024  # queued response bytes before the app's thread waits
LOW_WATER = 32 * 1024
_WAIT_SLICE = 1.0  # a waiting thread checks this often that the loop is still alive


class Aborted(OSError):
    """The client went away or the server gave up on this request; raised in the app's thread."""


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Exchange:
    __slots__ = (
        "_body",
        "_body_more",
        "_cond",
        "_loop",
        "_out",
        "_out_bytes",
        "_unfinished",
        "_waiter",
        "_want_body",
        "aborted",
        "high",
        "low",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, high: int = HIGH_WATER, low: int = LOW_WATER) -> None:
        self._loop = loop
        self._cond = threading.Condition(threading.Lock())
        self._out: list[tuple[int, Any]] = []
        self._out_bytes = 0  # posted body bytes the loop has not handed to the connection yet
        self._unfinished = 0  # posted pieces the loop has not finished with
        self._waiter: asyncio.Future[None] | None = None  # set while the loop task sleeps
        self._want_body = False
        self._body: bytes | None = None  # a chunk handed to the thread, not yet taken
        self._body_more = True
        self.aborted = False
        self.high = high
        self.low = low

    # -- the app's thread --------------------------------------------------------------------

    def post(self, kind: int, payload: Any, size: int = 0, *, wake: bool = True) -> None:
        """Queue one response piece; waits while too much is queued. Raises Aborted."""
        self.post_all(((kind, payload),), size, wake=wake)

    def post_all(self, pieces: Sequence[tuple[int, Any]], size: int, *, wake: bool = True) -> None:
        """Queue pieces in order (one, or a response the app gave as a list); waits while
        too much is queued. Raises Aborted."""
        with self._cond:
            if self.aborted:
                raise Aborted("client disconnected")
            self._out.extend(pieces)
            self._unfinished += len(pieces)
            self._out_bytes += size
            if wake:
                self._wake_locked()
            if self._out_bytes > self.high:
                self._wait_locked(lambda: self._out_bytes <= self.low)

    def flush(self) -> None:
        """Wait until the loop has finished with everything posted (a file: sent)."""
        with self._cond:
            self._wait_locked(lambda: self._unfinished == 0)

    def read(self) -> tuple[bytes, bool]:
        """The next chunk of request body, and whether more may follow. Raises Aborted."""
        with self._cond:
            if self._body is None:
                if not self._body_more:
                    return b"", False
                self._want_body = True
                self._wake_locked()
                self._wait_locked(lambda: self._body is not None)
            body = self._body
            assert body is not None
            self._body = None
            return body, self._body_more

    def fail(self, exc: BaseException) -> None:
        """Hand the app's exception to the loop task (it raises it there)."""
        with self._cond:
            if self.aborted:
                return
            self._out.append((ERROR, exc))
            self._unfinished += 1
            self._wake_locked()

    def _wake_locked(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            try:
                self._loop.call_soon_threadsafe(_resolve, waiter)
            except RuntimeError:  # the loop is closed: nobody will ever take this
                self.aborted = True

    def _wait_locked(self, ready: Any) -> None:
        cond = self._cond
        while not ready():
            if self.aborted:
                raise Aborted("client disconnected")
            if not cond.wait(_WAIT_SLICE) and self._loop.is_closed():
                self.aborted = True

    # -- the loop ----------------------------------------------------------------------------

    def abort(self) -> None:
        """The request is over for the loop (client gone, task cancelled): free the thread."""
        with self._cond:
            self.aborted = True
            self._out.clear()
            self._cond.notify_all()

    async def pump(self, receive: Receive, send: Send) -> None:
        """Run the response from the thread's pieces until it is complete; on the loop."""
        cond = self._cond
        loop = self._loop
        while True:
            with cond:
                pieces = self._out
                want_body = self._want_body
                if pieces:
                    self._out = []
                elif not want_body:
                    waiter = self._waiter = loop.create_future()
            if pieces:
                if await self._deliver(pieces, send):
                    # The response is complete: a write() from the app after this (say, from
                    # close()) has nowhere to go and must not wait for a loop that moved on.
                    self.abort()
                    return
            elif not want_body:
                await waiter
                continue
            if want_body:
                message = await receive()
                if message["type"] != "http.request":  # http.disconnect
                    self.abort()
                    return
                with cond:
                    self._want_body = False
                    self._body = message.get("body", b"")
                    self._body_more = message.get("more_body", False)
                    cond.notify_all()

    async def _deliver(self, pieces: list[tuple[int, Any]], send: Send) -> bool:
        """Send the pieces in order; True once the response is complete."""
        i = 0
        n = len(pieces)
        while i < n:
            kind, payload = pieces[i]
            i += 1
            if kind == BODY:
                # Runs of body become one write; a body followed by END ends the response
                # in the same message, so a whole small response gets a Content-Length.
                body: bytes = payload
                if i < n and pieces[i][0] == BODY:
                    parts = [body]
                    while i < n and pieces[i][0] == BODY:
                        parts.append(pieces[i][1])
                        i += 1
                    body = b"".join(parts)
                    count = len(parts)
                else:
                    count = 1
                done = i < n and pieces[i][0] == END
                if done:
                    i += 1
                    count += 1
                await send({"type": "http.response.body", "body": body, "more_body": not done})
                self._finished(count, len(body))
                if done:
                    return True
            elif kind == START:
                status, headers = payload
                await send({"type": "http.response.start", "status": status, "headers": headers})
                self._finished(1, 0)
            elif kind == END:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                self._finished(1, 0)
                return True
            elif kind == FILE:
                await send({"type": "http.response.pathsend", "path": payload})
                self._finished(1, 0)
                return True
            else:  # ERROR
                self._finished(1, 0)
                raise payload
        return False

    def _finished(self, count: int, size: int) -> None:
        with self._cond:
            self._unfinished -= count
            self._out_bytes -= size
            self._cond.notify_all()
