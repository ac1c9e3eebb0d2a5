"""One HTTP/2 stream as an ASGI request cycle: the response as HEADERS and DATA frames.

The ASGI rules (message order, the request body, disconnects) are the base
class's (`steadyloop.asgi.cycle.RequestCycle`). This class turns what the app
sends into frames through the connection's `h2` engine, within HTTP/2 flow
control: body the peer's windows do not allow yet waits in `pending`, and the
app's `send()` waits for this stream's window, not for the whole connection.

Request body flow control runs the other way: the stream window opens only
as the app takes the body (`_take_body`), so a slow reader pauses its own
stream; the connection window opens as DATA arrives while the connection's
unread body stays within bounds (see `Http2Connection._on_data`).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Protocol

from steadyloop.asgi.cycle import ClientDisconnected, RequestCycle
from steadyloop.asgi.types import Message
from steadyloop.protocols.http2 import sendpath
from steadyloop.protocols.http2.requests import CONNECTION_FIELDS

FILE_CHUNK = 256 * 1024
# Response fields as the app gave them -> as sent (lower-cased name; None: a connection-specific
# field, dropped), for fields already checked. An app sends the same few fields again and again.
_SENT_AS: dict[Any, tuple[bytes, bytes] | None] = {}
_SENT_AS_LIMIT = 512  # distinct fields remembered
_SENT_AS_SIZE = 256  # longest field (name and value) remembered
_UNSEEN = object()


def _field(field: Any) -> tuple[bytes, bytes] | None:
    """A response field checked and lower-cased; None: dropped. Raises on CR, LF or NUL."""
    name, value = field
    name = bytes(name).lower()
    if name in CONNECTION_FIELDS:
        pair = None
    else:
        value = bytes(value)
        # `find` rather than `in`: on CPython 3.11 `b"x" in data` first tries the argument
        # as an integer and builds (then drops) a TypeError.
        if value.find(b"\r") != -1 or value.find(b"\n") != -1 or value.find(b"\0") != -1:
            raise RuntimeError(f"response header {name!r} contains CR, LF or NUL")
        pair = (name, value)
    # Only immutable fields are remembered: a tuple of two `bytes` (equal fields hash equal).
    remember = type(field) is tuple and type(field[0]) is bytes and type(field[1]) is bytes
    if remember and len(field[0]) + len(field[1]) <= _SENT_AS_SIZE:
        if len(_SENT_AS) >= _SENT_AS_LIMIT:
            _SENT_AS.clear()
        _SENT_AS[field] = pair
    return pair


class Http2Owner(Protocol):
    """What a stream needs from its HTTP/2 connection."""

    loop: asyncio.AbstractEventLoop
    done: asyncio.Future[None]
    h2: Any  # h2.connection.H2Connection
    write_paused: bool

    def flush(self) -> None: ...
    async def drain(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def response_complete(self, cycle: Any) -> None: ...
    def body_taken(self, stream_id: int, size: int, more: bool) -> None: ...
    def extra_headers(self) -> list[tuple[bytes, bytes]]: ...


class Http2StreamCycle(RequestCycle[Http2Owner]):
    stream_id = 0
    pending: Any = b""  # response body waiting for flow-control window (as the app gave it)
    end_pending = False  # the body ends once `pending` is out
    trailers_expected = False  # the app announced trailers (http.response.trailers)
    trailers: list[tuple[bytes, bytes]] | None = None
    stream_ended = False  # END_STREAM sent
    window_waiter: asyncio.Future[None] | None = None
    stalled_since = 0.0  # when pending output last moved (connection's coarse clock); 0: not stalled

    # -- request body: flow control ---------------------------------------------------------

    def _take_body(self) -> Message:
        message = super()._take_body()
        size = len(message["body"])
        if size and not self.disconnected:
            self.conn.body_taken(self.stream_id, size, not self.body_complete)
        return message

    # -- send ------------------------------------------------------------------------------

    def send(self, message: Message) -> Any:
        mtype = message["type"]
        if mtype == "http.response.trailers":
            if self.disconnected:
                raise ClientDisconnected("client disconnected")
            if not self.trailers_expected or self.response_complete or not self.end_pending:
                raise RuntimeError("'http.response.trailers' sent out of order")
            self.trailers = (self.trailers or []) + [
                (bytes(name).lower(), bytes(value)) for name, value in message.get("headers", ())
            ]
            if not message.get("more_trailers", False):
                self.trailers_expected = False
                self.conn_flush()
            return self._wait_window() if self.pending else self.conn.done
        if mtype == "http.response.start" and message.get("trailers", False):
            self.trailers_expected = True
        return super().send(message)

    def _send_continue(self) -> None:
        if not self.head_written:
            self.conn.h2.send_headers(self.stream_id, [(b":status", b"100")])
            self.conn.flush()

    def _head_fields(self) -> list[tuple[bytes, bytes]]:
        headers: list[tuple[bytes, bytes]] = [(b":status", str(self.status).encode("ascii"))]
        sent_as = _SENT_AS
        for field in self.response_headers:
            try:
                pair = sent_as.get(field, _UNSEEN)
            except TypeError:  # unhashable (a list, a bytearray): checked each time
                pair = _UNSEEN
            if pair is _UNSEEN:
                pair = _field(field)
            if pair is not None:
                headers.append(pair)  # type: ignore[arg-type]
        headers += self.conn.extra_headers()
        return headers

    def _write_head(self, end: bool, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        if headers is None:
            headers = self._head_fields()
        self.head_written = True
        engine = self.conn.h2
        if self.status < 200 or not sendpath.send_headers(engine, self.stream_id, headers, end):
            engine.send_headers(self.stream_id, headers, end_stream=end)
        if end:
            self.stream_ended = True

    def _write_whole(self, headers: list[tuple[bytes, bytes]], body: Any) -> bool:
        """The whole response at once (head and a body that fits the windows and one frame):
        HEADERS and DATA with END_STREAM in one step. False: nothing written."""
        if not sendpath.send_response(self.conn.h2, self.stream_id, headers, body):
            return False
        self.head_written = True
        self.stream_ended = True
        self.end_pending = True
        self.bytes_sent += len(body)
        self._complete()
        self.conn.flush()
        return True

    def _no_body(self) -> bool:
        status = self.status
        return self.is_head or status == 204 or status == 304 or status < 200

    def _send_body(self, body: Any, more: Any) -> bool:
        if not self.head_written:
            if self._no_body():
                self._write_head(end=True)
                self.conn.flush()
                if not more:
                    self._complete()
                return False
            headers = self._head_fields()
            if not more and body and not self.trailers_expected and self._write_whole(headers, body):
                return self.conn.write_paused
            self._write_head(not more and not body and not self.trailers_expected, headers)
            if self.stream_ended:
                self.conn.flush()
                self._complete()
                return False
        elif self.stream_ended:
            if not more and not self.response_complete:
                self._complete()  # a HEAD/204/304 response: its body is dropped
            return False
        if body:
            self.bytes_sent += len(body)
            self.pending = self.pending + body if self.pending else body
        if not more:
            self.end_pending = True
        self.conn_flush()
        return bool(self.pending) or self.conn.write_paused

    def conn_flush(self) -> None:
        self.send_pending()
        self.conn.flush()

    def send_pending(self) -> None:
        """Send what the windows allow of `pending`; end the stream when all is out. Called
        on the app's send and when the peer opens a window (WINDOW_UPDATE, SETTINGS)."""
        h2 = self.conn.h2
        sid = self.stream_id
        pending = self.pending
        if pending:
            window = h2.local_flow_control_window(sid)
            frame = h2.max_outbound_frame_size
            view = memoryview(pending)
            sent = 0
            total = len(pending)
            # The last frame carries END_STREAM when nothing else is to follow (no trailers).
            last_ends = self.end_pending and not self.trailers_expected and not self.trailers
            while sent < total and window > 0:
                size = min(frame, window, total - sent)
                end = last_ends and sent + size == total
                if not sendpath.send_data(h2, sid, view[sent : sent + size], end):
                    h2.send_data(sid, view[sent : sent + size], end_stream=end)
                sent += size
                window -= size
                if end:
                    self.stream_ended = True
            view.release()
            self.pending = pending[sent:] if sent < len(pending) else b""
            if sent:
                self.stalled_since = 0.0  # the peer took bytes: progress (see --timeout-write)
            if self.pending:
                return
        if self.end_pending and not self.trailers_expected and not self.response_complete:
            if not self.stream_ended:
                self.stream_ended = True
                if self.trailers:
                    h2.send_headers(sid, self.trailers, end_stream=True)
                else:
                    h2.end_stream(sid)
            self._wake_window()
            self._complete()
        else:
            self._wake_window()

    def window_opened(self) -> None:
        if self.pending or (self.end_pending and not self.stream_ended):
            self.send_pending()

    def _wake_window(self) -> None:
        waiter = self.window_waiter
        if waiter is not None:
            self.window_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def on_disconnect(self) -> None:
        super().on_disconnect()
        self.pending = b""
        self._wake_window()

    async def _drain(self) -> None:
        await self._wait_window()

    async def _wait_window(self) -> None:
        """Wait until this stream's pending body is out and the transport takes more."""
        while self.pending and not self.disconnected:
            waiter = self.window_waiter
            if waiter is None:
                waiter = self.window_waiter = self.conn.loop.create_future()
            await waiter
        await self.conn.drain()
        if self.disconnected:
            raise ClientDisconnected("client disconnected")

    async def _send_file(self, path: Any) -> None:
        """http.response.pathsend: the file as DATA frames, read on a pool thread."""
        loop = self.conn.loop
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            left = size
            while True:
                chunk = await loop.run_in_executor(None, file.read, min(FILE_CHUNK, left)) if left else b""
                left -= len(chunk)
                more = bool(chunk) and left > 0
                if self._send_body(chunk, more) or (not more and self.pending):
                    await self._wait_window()
                if not more:
                    return
