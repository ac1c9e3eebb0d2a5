"""The HTTP/1.1 side of a request cycle: the response head, body framing, 100 Continue,
and pathsend through sendfile.

The ASGI rules (message order, the request body, disconnects) are the base
class's (`steadyloop.asgi.cycle.RequestCycle`); this class only turns what the
app sends into HTTP/1.1 bytes on the connection's transport.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from steadyloop.asgi.cycle import ClientDisconnected, RequestCycle
from steadyloop.config import Config
from steadyloop.http.errors import ResponseError
from steadyloop.http.response import build_head
from steadyloop.http.writers import (
    CHUNKED,
    FRAMING_LENGTH,
    NO_BODY,
    BodyWriter,
    LengthWriter,
    writer_for,
)
from steadyloop.protocols.http1.sendfile import SENDFILE_CHUNK, SendfileJob

logger = logging.getLogger("steadyloop.error")

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _ServerHeaders(Protocol):
    head_extra_block: bytes  # Date, Server and --header lines, kept current by the server
    config: Config


class Http1Owner(Protocol):
    """What an HTTP/1.1 cycle needs from its connection."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    write_paused: bool
    done: asyncio.Future[None]
    # A whole response: written now, or gathered while requests are pipelined.
    write: Callable[[bytes], object]

    def write_through(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def response_complete(self, cycle: Any) -> None: ...
    @property
    def state(self) -> _ServerHeaders: ...


class Http1Cycle(RequestCycle[Http1Owner]):
    writer: BodyWriter = NO_BODY  # the framing, once the head is out
    sendfile_job: SendfileJob | None = None  # set while a pathsend is on a pool thread
    task: asyncio.Task[None] | None = None  # the app's task, once it runs
    # The app's coroutine (or, once its first step ran eagerly and awaited, the eager.Resumed
    # that carries it on), until its task's first step (Http1Connection._run_app) takes it.
    # Typed Any: mypyc leaves a class-level default unset on a union with a compiled class.
    coro: Any = None
    # The task ends through Http1Connection._task_done rather than at the end of _run_app.
    ends_by_callback = False
    # Called once the client is gone, for an app that serves the request without a task of
    # its own (the WSGI bridge's direct path): it has no receive() waiting to hear it.
    on_gone: Callable[[], None] | None = None

    def on_disconnect(self) -> None:
        if self.sendfile_job is not None:
            self.sendfile_job.stop.set()
        super().on_disconnect()
        on_gone = self.on_gone
        if on_gone is not None:
            self.on_gone = None
            on_gone()

    def respond(self, status: int, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> None:
        """A whole response in one call, for an app served without a task (the WSGI bridge's
        direct path): what `send` does with http.response.start and then the one final
        http.response.body, without building the two messages. Errors raise at the call."""
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        if self.response_started:
            raise RuntimeError(self._out_of_order("http.response.start"))
        self.response_started = True
        self.status = status
        self.response_headers = headers
        self._send_body(body, False)

    def _send_continue(self) -> None:
        if not self.head_written:
            self.conn.write_through(_CONTINUE)
        else:
            # Too late for an interim response: the client may never send the body, and this
            # connection cannot be trusted for another request.
            self.keep_alive = False

    def _write_head(self, body_length: int) -> tuple[bytes, int, int]:
        """Build the response head; `body_length` is -1 while more body is to come.
        Returns (head bytes, framing, content length or -1)."""
        status = self.status
        try:
            head, framing, content_length, self.keep_alive = build_head(
                status,
                self.response_headers,
                self.conn.state.head_extra_block,
                # "Any response to a HEAD request and any response with a 1xx, 204 or 304
                # status code is always terminated by the first empty line after the header
                # fields" -- RFC 9112 §6.3
                not (self.is_head or status < 200 or status == 204 or status == 304),
                body_length,
                self.head.http_version == "1.0",
                self.keep_alive,
            )
        except ResponseError as exc:
            self.response_started = False  # let the error path answer 500
            raise RuntimeError(str(exc)) from None
        self.head_written = True
        return head, framing, content_length

    def _send_body(self, body: Any, more: Any) -> bool:
        """Write one body message; True when the app must wait for the client to drain.

        A plain function, not a coroutine: most responses never wait, and an await per
        message is measurable on the hot path.
        """
        if not self.head_written:
            head, framing, length = self._write_head(-1 if more else len(body))
            if not more and framing == FRAMING_LENGTH and length == len(body):
                # The whole body in one message, as promised: the most common response.
                self.bytes_sent = length
                self.conn.write(head + body if body else head)
                # _complete, inlined.
                self.response_complete = True
                if self.waiter is not None:
                    self._wake()
                self.conn.response_complete(self)
                return False
            writer = self.writer = writer_for(framing, length)
            try:
                data = head + self._frame(body)
            except RuntimeError:
                self.head_written = False  # nothing went out: the error path can answer 500
                raise
        else:
            data = self._frame(body)
        if not more:
            writer = self.writer
            if writer is CHUNKED:
                data += writer.finish()
            elif writer.owed > 0:
                # The app promised more bytes than it sent; the client would wait forever.
                self.keep_alive = False
                logger.error(
                    "ASGI app sent %d bytes fewer than its Content-Length (%s %s)",
                    writer.owed,
                    self.method,
                    self.path,
                )
        if data:
            self.conn.write_through(data)
        if not more:
            self._complete()
            return False
        return self.conn.write_paused

    def _frame(self, body: Any) -> bytes:
        writer = self.writer
        if not body or writer is NO_BODY:
            return b""  # HEAD, 204, 304: the body is dropped, never written
        try:
            data = writer.frame(body)
        except ResponseError as exc:
            raise RuntimeError(str(exc)) from None
        self.bytes_sent += len(body)
        return data

    async def _send_file(self, path: Any) -> None:
        """http.response.pathsend: the whole file as the rest of the body, via sendfile."""
        loop = self.conn.loop
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            head = b""
            if not self.head_written:
                head, framing, length = self._write_head(size)
                self.writer = writer_for(framing, length)
            writer = self.writer
            if writer is NO_BODY or writer is CHUNKED:
                # HEAD/204/304, or a length we had to announce chunked: no sendfile shortcut.
                body = await loop.run_in_executor(None, file.read) if writer is CHUNKED else b""
                self.conn.write_through(head + self._frame(body) + writer.finish())
            else:
                if head:
                    self.conn.write_through(head)
                if isinstance(writer, LengthWriter):
                    if size != writer.left:
                        # The file changed since the app measured it. Never send more than
                        # announced: the extra bytes would read as the next response.
                        logger.error(
                            "pathsend %s: file is %d bytes, Content-Length says %d", path, size, writer.left
                        )
                        self.keep_alive = False
                        size = min(size, writer.left)
                    writer.left -= size
                sent = await self._sendfile(file, size)
                self.bytes_sent += sent
                if sent < size:
                    self.keep_alive = False  # short file: the client must not wait for more
        self._complete()

    async def _sendfile(self, file: Any, size: int) -> int:
        """Send `size` bytes of `file`; returns how many went out."""
        conn = self.conn
        transport = conn.transport
        # Let the transport's own buffer drain first: setting both marks to zero makes it call
        # pause_writing while anything is buffered, and resume_writing when empty.
        transport.set_write_buffer_limits(high=0, low=0)
        try:
            if conn.write_paused:
                await conn.drain()
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
        job = SendfileJob(
            os.dup(sock.fileno()), os.dup(file.fileno()), size, conn.state.config.timeouts.write
        )
        self.sendfile_job = job
        try:
            return await conn.loop.run_in_executor(None, job.run)
        except OSError as exc:
            raise ClientDisconnected(f"client went away during sendfile: {exc}") from None
        finally:
            job.stop.set()
            self.sendfile_job = None

    async def _copy_file(self, file: Any, size: int) -> int:
        conn = self.conn
        left = size
        while left > 0:
            chunk = await conn.loop.run_in_executor(None, file.read, min(SENDFILE_CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            conn.write_through(chunk)
            if conn.write_paused:
                await conn.drain()
            if self.disconnected:
                raise ClientDisconnected("client disconnected")
        return size - left
