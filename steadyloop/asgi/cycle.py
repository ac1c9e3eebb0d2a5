"""One HTTP request/response cycle, seen from the ASGI app: `receive` and `send`.

This module holds the ASGI rules of the `http` scope and nothing of any wire
protocol: the order of messages, the request body handed over with flow
control, `http.disconnect`, what `send` raises once the client is gone. A
protocol subclasses `RequestCycle` and writes the response its own way:

    _send_body(body, more) -> bool     write one piece of body; True: the app must
                                       wait for the client to drain
    _send_file(path)                   http.response.pathsend, the rest of the body
    _send_continue()                   the client waits for "100 Continue"

The connection that carries the cycle feeds the request body in with
`feed_body` / `end_body`, tells it the client went away with `on_disconnect`,
and hears `response_complete(cycle)` once, when the response is done.

All of this runs on the event loop thread.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from steadyloop.asgi.errors import ClientDisconnected as ClientDisconnected
from steadyloop.asgi.types import Message, Scope

if TYPE_CHECKING:
    from steadyloop.http.parser import RequestHead

# Unread request body kept per request before reading from the socket pauses. Reading
# resumes when the app takes what is buffered (receive() hands over all of it at once).
BODY_HIGH_WATER = 256 * 1024
_request_numbers = itertools.count(1)


def request_id_for(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's X-Request-ID, or a new one unique in this server's life."""
    for name, value in headers:
        if name == b"x-request-id":
            return value.decode("latin-1")
    return f"{os.getpid():x}-{next(_request_numbers):x}"


class CycleOwner(Protocol):
    """What a cycle needs from the connection (or stream) that carries it."""

    loop: asyncio.AbstractEventLoop
    done: asyncio.Future[None]  # an already-completed future: "nothing to wait for"

    async def drain(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def response_complete(self, cycle: Any) -> None: ...


_DISCONNECT: Message = {"type": "http.disconnect"}
# The carrier's type, for each protocol's cycle: generic rather than narrowed in the subclass,
# which mypyc refuses (an attribute's type is checked at run time in a compiled class).
OwnerT = TypeVar("OwnerT", bound=CycleOwner)


class RequestCycle(Generic[OwnerT]):
    # Class-level defaults: a new cycle only stores what differs, which is measurable on the
    # hot path (one cycle per request). Instances shadow these on first assignment.
    # Request body, fed by the connection.
    # Body pieces not yet received by the app: a list once the first arrives (most requests
    # have no body, and then no list is built).
    # (Not `tuple[()]`: mypyc mis-compiles `not self.chunks` on a union with the empty tuple.)
    chunks: list[bytes] | tuple[bytes, ...] = ()
    body_size = 0
    body_complete = False
    final_body_delivered = False
    reading_paused = False
    continue_sent = False
    disconnected = False
    waiter: asyncio.Future[None] | None = None
    # Response state.
    response_started = False
    response_complete = False
    head_written = False  # the first bytes of the response are out: no other answer is possible
    # What the app gave, unchecked until the head is built: Any, not int, so that a compiled
    # build (mypyc checks declared types at run time) fails the same way as the pure one.
    status: Any = 0
    response_headers: Any = ()
    bytes_sent = 0
    # Why the response ended early, for the access log ("write timeout", ...); "" if it did not.
    cut_short = ""
    _request_id: str | None = None

    def __init__(self, conn: OwnerT, scope: Scope, head: RequestHead, started_at: float) -> None:
        self.conn = conn
        self.scope = scope
        self.head = head
        self.method = method = head.method
        self.target = head.target
        self.path: str = scope["path"]
        self.is_head = method == "HEAD"
        self.keep_alive = head.keep_alive
        self.expect_continue = head.expect_continue
        self.started_at = started_at

    @property
    def request_id(self) -> str:
        """The client's X-Request-ID, or one made up on first use (most requests never ask)."""
        rid = self._request_id
        if rid is None:
            rid = self._request_id = request_id_for(self.head.headers)
        return rid

    # -- fed by the connection ------------------------------------------------------------

    def feed_body(self, data: bytes) -> None:
        chunks = self.chunks
        if isinstance(chunks, list):
            chunks.append(data)
        else:
            self.chunks = [data]
        self.body_size += len(data)
        if self.body_size > BODY_HIGH_WATER and not self.reading_paused:
            self.reading_paused = True
            self.conn.pause_reading()
        self._wake()

    def end_body(self) -> None:
        # Inlined in Http1Connection._pump: keep the two in step.
        self.body_complete = True
        if self.waiter is not None:
            self._wake()

    def on_disconnect(self) -> None:
        self.disconnected = True
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- receive ---------------------------------------------------------------------------

    def receive(self) -> Awaitable[Message]:
        if self.body_complete and not (
            self.final_body_delivered or self.disconnected or self.response_complete
        ):
            # The body is all here (always so for GET): answer without a coroutine.
            ready = self.conn.loop.create_future()
            ready.set_result(self._take_body())
            return ready
        return self._receive()

    async def _receive(self) -> Message:
        if self.disconnected or self.response_complete:
            return _DISCONNECT
        if self.final_body_delivered:
            # The whole body was delivered; what is left to tell is the end of the exchange.
            await self._wait()
            return _DISCONNECT
        if not self.chunks and not self.body_complete:
            if self.expect_continue and not self.continue_sent:
                # "100 Continue" only once the app asks for the body -- RFC 9110 §10.1.1
                self.continue_sent = True
                self._send_continue()
            while not self.chunks and not self.body_complete and not self.disconnected:
                await self._wait()
            if self.disconnected and not self.chunks:
                return _DISCONNECT
        return self._take_body()

    def _take_body(self) -> Message:
        chunks = self.chunks
        if not chunks:
            body = b""
        elif len(chunks) == 1:
            body = chunks[0]
        else:
            body = b"".join(chunks)
        if chunks:
            self.chunks = ()
        self.body_size = 0
        if self.reading_paused:
            self.reading_paused = False
            self.conn.resume_reading()
        more = not self.body_complete
        if not more:
            self.final_body_delivered = True
        return {"type": "http.request", "body": body, "more_body": more}

    async def _wait(self) -> None:
        waiter = self.waiter
        if waiter is None:
            waiter = self.waiter = self.conn.loop.create_future()
        await waiter

    # -- send ------------------------------------------------------------------------------

    def send(self, message: Message) -> Awaitable[None]:
        """ASGI send. A plain function returning an awaitable: a response that needs no
        waiting (the common case) costs no coroutine. Errors raise at the call."""
        mtype = message["type"]
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        if mtype == "http.response.body":
            if not self.response_started or self.response_complete:
                raise RuntimeError(self._out_of_order(mtype))
            if self._send_body(message.get("body", b""), message.get("more_body", False)):
                return self._drain()
        elif mtype == "http.response.start":
            if self.response_started:
                raise RuntimeError(self._out_of_order(mtype))
            self.response_started = True
            self.status = message["status"]
            self.response_headers = message.get("headers", ())
        elif mtype == "http.response.pathsend":
            if not self.response_started or self.response_complete:
                raise RuntimeError(self._out_of_order(mtype))
            return self._send_file(message["path"])
        else:
            raise RuntimeError(f"unexpected ASGI message type {mtype!r} for an http scope")
        return self.conn.done

    async def _drain(self) -> None:
        await self.conn.drain()
        if self.disconnected:
            raise ClientDisconnected("client disconnected")

    def _out_of_order(self, mtype: str) -> str:
        if self.response_complete:
            return f"ASGI message {mtype!r} sent after the response was complete"
        if self.response_started:
            return f"ASGI message {mtype!r} sent after the response had started"
        return f"ASGI message {mtype!r} sent before 'http.response.start'"

    def _complete(self) -> None:
        """The response is done: tell the app's waiting receive() and the connection.
        (Inlined in Http1Cycle._send_body.)"""
        self.response_complete = True
        if self.waiter is not None:
            self._wake()
        self.conn.response_complete(self)

    # -- the protocol's part -----------------------------------------------------------------

    # The app's values as given (Any: see `status`); bytes and bool when the app follows ASGI.
    def _send_body(self, body: Any, more: Any) -> bool:
        raise NotImplementedError

    async def _send_file(self, path: Any) -> None:
        raise NotImplementedError

    def _send_continue(self) -> None:
        raise NotImplementedError
