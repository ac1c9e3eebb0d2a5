"""One HTTP request/response cycle, seen from the ASGI app: `receive` and `send`.

The connection (steadyloop.server.connection) feeds the request body in with
`feed_body` / `end_body` and tells the cycle when the client goes away with
`on_disconnect`. The app drives the response through `send`, and the cycle
writes through the connection, waiting while the client is not draining.

All of this runs on the event loop thread.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import select
import threading
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Protocol

from steadyloop.asgi.types import Message, Scope
from steadyloop.http.errors import ResponseError
from steadyloop.http.response import (
    FRAMING_CHUNKED,
    FRAMING_LENGTH,
    FRAMING_NONE,
    build_head,
)

if TYPE_CHECKING:
    from steadyloop.http.parser import RequestHead

logger = logging.getLogger("steadyloop.error")

# Unread request body kept per request before reading from the socket pauses. Reading
# resumes when the app takes what is buffered (receive() hands over all of it at once).
BODY_HIGH_WATER = 256 * 1024
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_SENDFILE_CHUNK = 1024 * 1024
_request_numbers = itertools.count(1)


class ClientDisconnected(OSError):
    """Raised by `send` once the client has gone away (ASGI spec 2.4)."""


class _ServerHeaders(Protocol):
    head_extra_block: bytes  # Date, Server and --header lines, kept current by the server


class Connection(Protocol):
    """What a cycle needs from the connection that carries it."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    write_paused: bool
    done: asyncio.Future[None]  # an already-completed future: "nothing to wait for"

    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    @property
    def state(self) -> _ServerHeaders: ...
    def response_complete(self, cycle: RequestCycle) -> None: ...
    def abort(self) -> None: ...


_DISCONNECT: Message = {"type": "http.disconnect"}


class RequestCycle:
    # Class-level defaults: a new cycle only stores what differs, which is measurable on the
    # hot path (one cycle per request). Instances shadow these on first assignment.
    # Request body, fed by the connection.
    chunks: list[bytes]
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
    head_written = False
    status = 0
    response_headers: Any = ()
    framing = FRAMING_NONE
    content_left = -1
    bytes_sent = 0
    _request_id: str | None = None
    sendfile_job: _SendfileJob | None = None  # set while a pathsend is on a pool thread

    def __init__(self, conn: Connection, scope: Scope, head: RequestHead, started_at: float) -> None:
        self.conn = conn
        self.scope = scope
        self.head = head
        self.method = method = head.method
        self.target = head.target
        self.path: str = scope["path"]
        self.http_10 = head.http_version == "1.0"
        self.is_head = method == "HEAD"
        self.keep_alive = head.keep_alive
        self.expect_continue = head.expect_continue
        self.started_at = started_at
        self.chunks = []

    @property
    def request_id(self) -> str:
        """The client's X-Request-ID, or one made up on first use (most requests never ask)."""
        rid = self._request_id
        if rid is None:
            for name, value in self.head.headers:
                if name == b"x-request-id":
                    rid = value.decode("latin-1")
                    break
            else:
                rid = f"{os.getpid():x}-{next(_request_numbers):x}"
            self._request_id = rid
        return rid

    # -- fed by the connection ------------------------------------------------------------

    def feed_body(self, data: bytes) -> None:
        self.chunks.append(data)
        self.body_size += len(data)
        if self.body_size > BODY_HIGH_WATER and not self.reading_paused:
            self.reading_paused = True
            self.conn.pause_reading()
        self._wake()

    def end_body(self) -> None:
        self.body_complete = True
        if self.waiter is not None:
            self._wake()

    def on_disconnect(self) -> None:
        self.disconnected = True
        if self.sendfile_job is not None:
            self.sendfile_job.stop.set()
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
                self.continue_sent = True
                if not self.head_written:
                    # "100 Continue" only once the app asks for the body -- RFC 9110 §10.1.1
                    self.conn.write(_CONTINUE)
                else:
                    # Too late for an interim response: the client may never send the body,
                    # and this connection cannot be trusted for another request.
                    self.keep_alive = False
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
        chunks.clear()
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

    def _write_head(self, body_length: int) -> bytes:
        """Build the response head; `body_length` is -1 while more body is to come."""
        status = self.status
        try:
            head, self.framing, self.content_left, self.keep_alive = build_head(
                status,
                self.response_headers,
                self.conn.state.head_extra_block,
                # "Any response to a HEAD request and any response with a 1xx, 204 or 304
                # status code is always terminated by the first empty line after the header
                # fields" -- RFC 9112 §6.3
                not (self.is_head or status < 200 or status == 204 or status == 304),
                body_length,
                self.http_10,
                self.keep_alive,
            )
        except ResponseError as exc:
            self.response_started = False  # let the error path answer 500
            raise RuntimeError(str(exc)) from None
        self.head_written = True
        return head

    def _send_body(self, body: bytes, more: bool) -> bool:
        """Write one body message; True when the app must wait for the client to drain.

        A plain function, not a coroutine: most responses never wait, and an await per
        message is measurable on the hot path.
        """
        if not self.head_written:
            head = self._write_head(-1 if more else len(body))
            if not body:
                data = head
            elif self.framing == FRAMING_LENGTH and len(body) == self.content_left:
                # The whole body in one message, as promised: the most common response.
                self.content_left = 0
                self.bytes_sent = len(body)
                data = head + body
            else:
                try:
                    data = head + self._frame(body)
                except RuntimeError:
                    self.head_written = False  # nothing went out: the error path can answer 500
                    raise
        elif body:
            data = self._frame(body)
        else:
            data = b""
        if not more:
            if self.framing == FRAMING_CHUNKED:
                data += b"0\r\n\r\n"
            elif self.framing == FRAMING_LENGTH and self.content_left > 0:
                # The app promised more bytes than it sent; the client would wait forever.
                self.keep_alive = False
                logger.error(
                    "ASGI app sent %d bytes fewer than its Content-Length (%s %s)",
                    self.content_left,
                    self.method,
                    self.path,
                )
        if data:
            self.conn.transport.write(data)
        if not more:
            self.response_complete = True
            if self.waiter is not None:
                self._wake()
            self.conn.response_complete(self)
            return False
        return self.conn.write_paused

    def _frame(self, body: bytes) -> bytes:
        framing = self.framing
        if framing == FRAMING_NONE:
            return b""  # HEAD, 204, 304: the body is dropped, never written
        n = len(body)
        self.bytes_sent += n
        if framing == FRAMING_LENGTH:
            left = self.content_left - n
            if left < 0:
                raise RuntimeError("ASGI app sent more bytes than its Content-Length")
            self.content_left = left
            return body
        if framing == FRAMING_CHUNKED:
            return b"%x\r\n%b\r\n" % (n, body)
        return body  # FRAMING_CLOSE

    async def _send_file(self, path: str) -> None:
        """http.response.pathsend: the whole file as the rest of the body, via sendfile."""
        loop = self.conn.loop
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            head = b""
            if not self.head_written:
                head = self._write_head(size)
            if self.framing in (FRAMING_NONE, FRAMING_CHUNKED):
                # HEAD/204/304, or a length we had to announce chunked: no sendfile shortcut.
                body = await loop.run_in_executor(None, file.read) if self.framing else b""
                self.conn.write(head + self._frame(body))
                if self.framing == FRAMING_CHUNKED:
                    self.conn.write(b"0\r\n\r\n")
            else:
                if head:
                    self.conn.write(head)
                if self.framing == FRAMING_LENGTH:
                    if size != self.content_left:
                        # The file changed since the app measured it. Never send more than
                        # announced: the extra bytes would read as the next response.
                        logger.error(
                            "pathsend %s: file is %d bytes, Content-Length says %d",
                            path,
                            size,
                            self.content_left,
                        )
                        self.keep_alive = False
                        size = min(size, self.content_left)
                    self.content_left -= size
                sent = await self._sendfile(file, size)
                self.bytes_sent += sent
                if sent < size:
                    self.keep_alive = False  # short file: the client must not wait for more
        self.response_complete = True
        self._wake()
        self.conn.response_complete(self)

    async def _sendfile(self, file: Any, size: int) -> int:
        """Send `size` bytes of `file`; returns how many went out."""
        transport = self.conn.transport
        # Let the transport's own buffer drain first: setting both marks to zero makes it call
        # pause_writing while anything is buffered, and resume_writing when empty.
        transport.set_write_buffer_limits(high=0, low=0)
        try:
            if self.conn.write_paused:
                await self.conn.drain()
        finally:
            transport.set_write_buffer_limits()
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        sock = transport.get_extra_info("socket")
        if sock is None or not hasattr(os, "sendfile"):
            return await self._copy_file(file, size)
        # The pool thread works on its own duplicates of both descriptors and stops when told:
        # if this request ends first (cancelled, client gone), the numbers of the originals may
        # be reused by another connection at once.
        job = _SendfileJob(os.dup(sock.fileno()), os.dup(file.fileno()), size)
        self.sendfile_job = job
        try:
            return await self.conn.loop.run_in_executor(None, job.run)
        except OSError as exc:
            raise ClientDisconnected(f"client went away during sendfile: {exc}") from None
        finally:
            job.stop.set()
            self.sendfile_job = None

    async def _copy_file(self, file: Any, size: int) -> int:
        loop = self.conn.loop
        left = size
        while left > 0:
            chunk = await loop.run_in_executor(None, file.read, min(_SENDFILE_CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            self.conn.write(chunk)
            if self.conn.write_paused:
                await self.conn.drain()
            if self.disconnected:
                raise ClientDisconnected("client disconnected")
        return size - left


class _SendfileJob:
    """os.sendfile on a pool thread, over duplicated descriptors that it closes itself."""

    # A client that takes nothing for this long gives up its pool thread.
    STALL_LIMIT = 60.0

    def __init__(self, sock_fd: int, file_fd: int, size: int) -> None:
        self.sock_fd = sock_fd
        self.file_fd = file_fd
        self.size = size
        self.stop = threading.Event()  # set when the request ends, whatever the reason

    def run(self) -> int:
        poller = select.poll()  # not select(): descriptors above 1024 are common in a busy worker
        poller.register(self.sock_fd, select.POLLOUT)
        offset = 0
        stalled_since = time.monotonic()
        try:
            while offset < self.size and not self.stop.is_set():
                try:
                    sent = os.sendfile(
                        self.sock_fd, self.file_fd, offset, min(self.size - offset, _SENDFILE_CHUNK * 8)
                    )
                except BlockingIOError:
                    if time.monotonic() - stalled_since > self.STALL_LIMIT:
                        raise TimeoutError("client read nothing for a minute") from None
                    poller.poll(250)  # milliseconds; short, so that `stop` is noticed
                    continue
                if sent == 0:
                    break  # the file is shorter than it was
                offset += sent
                stalled_since = time.monotonic()
            return offset
        finally:
            os.close(self.sock_fd)
            os.close(self.file_fd)
