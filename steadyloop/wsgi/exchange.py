"""The channel between one WSGI request's thread and its task on the event loop.

The app runs on a pool thread; the socket belongs to the loop. The thread
never touches the connection: it posts response pieces (START, BODY, FILE,
END, ERROR, or WHOLE for a response given as a list) into this exchange and
asks it for request body, and the request's task on the loop (`pump`) turns
them into ASGI `send` and `receive` calls; a request served without a task
takes a whole response with `take_response` instead.

Flow control, both ways:

* Response: `post` returns at once while less than `high` bytes are queued or
  being written; beyond that the thread waits until the loop has handed all
  but `low` to the connection. The connection's `send` itself waits while the
  client is not draining, so a slow reader stops the app's iterator, not the
  server's memory. (PEP 3333 allows this: a block is never delayed, it is
  handed to the loop, which keeps transmitting while the app makes the next.)
  A whole response above `high` holds its thread only until the loop has
  taken it: the response is complete then, and the thread is told so.
* Request body: the thread asks for the next chunk only when the app reads
  (`wsgi.input`), and the loop calls `receive()` only then; the connection
  stops reading from the socket while unread body piles up.

The thread wakes the loop task only when it is idle and there is something it
can act on; a START alone waits for the body that follows it, so a small
response costs one wake-up and goes out with a Content-Length. Wake-ups go
through the loop's `Waker`: responses finished by several pool threads while
the loop is busy cost one `call_soon_threadsafe` (and one write to the loop's
wake-up descriptor) between them, not one each.

The lock is a plain `threading.Lock`, held only for list and counter updates.
A thread that has to wait (flow control, request body, a file being sent)
makes the exchange's `Condition` on that same lock the first time; most
requests never wait, and never pay for one.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

from steadyloop.asgi.types import Receive, Send
from steadyloop.wsgi.aborted import Aborted as Aborted

START: Final = 0  # (status, headers)
BODY: Final = 1  # bytes
FILE: Final = 2  # a path: the rest of the response is this file, sent with sendfile
END: Final = 3  # None
ERROR: Final = 4  # the app's exception, raised in the request's task
WHOLE: Final = 5  # (status, headers, body): the whole response, given at once (post_whole)

HIGH_WATER = 128 * 1024  # queued response bytes before the app's thread waits
LOW_WATER = 32 * 1024
_WAIT_SLICE = 1.0  # a waiting thread checks this often that the loop is still alive


class Wakeable(Protocol):
    """What a thread wakes on the loop: a request task's future, or the bridge's direct
    request (whose set_result delivers the response at once)."""

    def done(self) -> bool: ...
    def set_result(self, result: None, /) -> None: ...


class Waker:
    """Wakes request tasks on one loop from pool threads, many with one loop wake-up.

    `call_soon_threadsafe` builds a handle and writes to the loop's wake-up
    descriptor each time; under load many responses finish while the loop is
    busy, and one call then resolves all of their waiters.
    """

    __slots__ = ("_lock", "_loop", "_pending", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: list[Wakeable] = []
        self._scheduled = False  # a call to _run is on its way to the loop

    def wake(self, waiter: Wakeable) -> None:
        """Resolve `waiter` on the loop soon; any thread. RuntimeError: the loop is closed."""
        with self._lock:
            self._pending.append(waiter)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._run)
        except RuntimeError:
            with self._lock:
                self._scheduled = False
            raise

    def _run(self) -> None:
        with self._lock:
            pending = self._pending
            self._pending = []
            self._scheduled = False
        for waiter in pending:
            if not waiter.done():
                try:
                    waiter.set_result(None)
                except Exception as exc:
                    # What asyncio does with a callback that fails (a direct request runs
                    # connection code here): report it, and wake the rest of the batch.
                    self._loop.call_exception_handler(
                        {"message": "waking a WSGI request failed", "exception": exc}
                    )


class Exchange:
    __slots__ = (
        "_body",
        "_body_more",
        "_cond",
        "_lock",
        "_loop",
        "_out",
        "_out_bytes",
        "_unfinished",
        "_waiter",
        "_waker",
        "_want_body",
        "aborted",
        "high",
        "low",
    )

    def __init__(
        self, loop: asyncio.AbstractEventLoop, waker: Waker, high: int = HIGH_WATER, low: int = LOW_WATER
    ) -> None:
        self._loop = loop
        self._waker = waker
        self._lock = threading.Lock()
        self._cond: threading.Condition | None = None  # made by the first thread that waits
        self._out: list[tuple[int, Any]] = []
        self._out_bytes = 0  # posted body bytes the loop has not handed to the connection yet
        self._unfinished = 0  # posted pieces the loop has not finished with
        self._waiter: Wakeable | None = None  # set while the loop task sleeps
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
        with self._lock:
            if self.aborted:
                raise Aborted("client disconnected")
            self._out.extend(pieces)
            self._unfinished += len(pieces)
            self._out_bytes += size
            if wake and self._waiter is not None:
                self._wake_locked()
            if self._out_bytes > self.high:
                self._wait_locked(self._drained)

    def post_whole(self, status: int, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> None:
        """Queue a whole response (head, body, end) as one piece: what `post_all` does with the
        three, for the common response an app gives as a list. Raises Aborted."""
        with self._lock:
            if self.aborted:
                raise Aborted("client disconnected")
            # Not counted in _unfinished: nothing waits for a whole response to be finished
            # (flush() is for files), and the loop is done with the exchange once it has it.
            self._out.append((WHOLE, (status, headers, body)))
            waiter = self._waiter
            if waiter is not None:  # _wake_locked, inline: this runs once per response
                self._waiter = None
                try:
                    self._waker.wake(waiter)
                except RuntimeError:  # the loop is closed: nobody will ever take this
                    self.aborted = True
            self._out_bytes += len(body)
            if self._out_bytes > self.high:
                self._wait_locked(self._drained)

    def _drained(self) -> bool:
        return self._out_bytes <= self.low

    def _all_finished(self) -> bool:
        return self._unfinished == 0

    def _body_ready(self) -> bool:
        return self._body is not None

    def flush(self) -> None:
        """Wait until the loop has finished with everything posted (a file: sent)."""
        with self._lock:
            self._wait_locked(self._all_finished)

    def read(self) -> tuple[bytes, bool]:
        """The next chunk of request body, and whether more may follow. Raises Aborted."""
        with self._lock:
            if self._body is None:
                if not self._body_more:
                    return b"", False
                self._want_body = True
                self._wake_locked()
                self._wait_locked(self._body_ready)
            body = self._body
            assert body is not None
            self._body = None
            return body, self._body_more

    def fail(self, exc: BaseException) -> None:
        """Hand the app's exception to the loop task (it raises it there)."""
        with self._lock:
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
                self._waker.wake(waiter)
            except RuntimeError:  # the loop is closed: nobody will ever take this
                self.aborted = True

    def _wait_locked(self, ready: Callable[[], bool]) -> None:
        cond = self._cond
        if cond is None:
            cond = self._cond = threading.Condition(self._lock)
        while not ready():
            if self.aborted:
                raise Aborted("client disconnected")
            if not cond.wait(_WAIT_SLICE) and self._loop.is_closed():
                self.aborted = True

    # -- the loop ----------------------------------------------------------------------------

    def wait_first(self, waiter: Wakeable) -> None:
        """What the thread's first wake-up resolves; set before the job is submitted."""
        self._waiter = waiter

    def take_response(self) -> tuple[int, Sequence[tuple[bytes, bytes]], bytes] | None:
        """(status, headers, body) when what the thread posted is a whole response that nothing
        was taken from yet (a head, body, the end: a small response given at once), and the
        exchange is over then; None when it is anything else (more to come, the request body
        wanted, a file, an error): `pump` deals with those."""
        with self._lock:
            out = self._out
            if self._want_body or not out:
                return None
            if len(out) == 1 and out[0][0] == WHOLE:
                response: tuple[int, Sequence[tuple[bytes, bytes]], bytes] = out[0][1]
            else:
                # Pieces posted one by one (an iterable that ended before the loop woke).
                if len(out) < 2 or out[0][0] != START or out[-1][0] != END:
                    return None
                blocks = []
                for kind, payload in out[1:-1]:
                    if kind != BODY:
                        return None
                    blocks.append(payload)
                status, headers = out[0][1]
                response = status, headers, b"".join(blocks)  # b"" for none; the block itself for one
            self.aborted = True  # complete: a later write() from the app raises Aborted
            self._out = []
            if self._cond is not None:
                # A response above the high-water mark left its thread waiting in post_all
                # for a drain that nobody reports now: free it (it raises Aborted and goes on).
                self._cond.notify_all()
        return response

    def abort(self) -> None:
        """The request is over for the loop (client gone, task cancelled, response complete):
        free the thread; its next post or read raises Aborted."""
        with self._lock:
            self.aborted = True
            self._out.clear()
            if self._cond is not None:
                self._cond.notify_all()

    async def pump(self, receive: Receive, send: Send) -> None:
        """Run the response from the thread's pieces until it is complete; on the loop."""
        lock = self._lock
        while True:
            with lock:
                pieces = self._out
                want_body = self._want_body
                if pieces:
                    self._out = []
                elif not want_body:
                    waiter = self._waiter = self._loop.create_future()
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
                with lock:
                    self._want_body = False
                    self._body = message.get("body", b"")
                    self._body_more = message.get("more_body", False)
                    if self._cond is not None:
                        self._cond.notify_all()

    async def _deliver(self, pieces: list[tuple[int, Any]], send: Send) -> bool:
        """Send the pieces in order; True once the response is complete (the caller aborts
        the exchange then, which frees a waiting thread: no counting needed for that)."""
        i = 0
        n = len(pieces)
        settled = 0  # pieces sent whose count the thread has not been told about yet
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
                if i < n and pieces[i][0] == END:
                    await send({"type": "http.response.body", "body": body, "more_body": False})
                    return True
                await send({"type": "http.response.body", "body": body, "more_body": True})
                self._finished(settled + count, len(body))
                settled = 0
            elif kind == START:
                # Told to the thread with what follows: a head alone frees no thread.
                status, headers = payload
                await send({"type": "http.response.start", "status": status, "headers": headers})
                settled += 1
            elif kind == END:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return True
            elif kind == WHOLE:
                status, headers, body = payload
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return True
            elif kind == FILE:
                await send({"type": "http.response.pathsend", "path": payload})
                self._finished(settled + 1, 0)  # the file is sent: a thread in flush() may go on
                return True
            else:  # ERROR
                self._finished(settled + 1, 0)
                raise payload
        if settled:
            self._finished(settled, 0)
        return False

    def _finished(self, count: int, size: int) -> None:
        with self._lock:
            self._unfinished -= count
            self._out_bytes -= size
            if self._cond is not None:
                self._cond.notify_all()
