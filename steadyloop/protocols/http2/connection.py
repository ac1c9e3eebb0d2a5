"""One HTTP/2 connection (RFC 9113): frames in, streams out, each stream an ASGI cycle.

    bytes -> h2 engine (framing, HPACK, stream states, flow control) -> events
    RequestReceived  -> a scope and an `Http2StreamCycle`, the app as a task
    DataReceived     -> cycle.feed_body; the connection window reopens at once
    StreamEnded      -> cycle.end_body
    StreamReset      -> cycle.on_disconnect
    WindowUpdated / RemoteSettingsChanged -> blocked streams send what now fits

A connection starts here in one of three ways (`start_http2`): ALPN chose
"h2" on a TLS connection, a cleartext client opened with the preface (prior
knowledge), or an HTTP/1.1 request asked for `Upgrade: h2c`.

What a peer may cost is bounded (`FloodLimits`): resets of streams the app has
not answered (rapid reset), SETTINGS, PING and empty DATA frames are counted
per second; CONTINUATION runs and header lists are bounded by the engine and
--http2-max-headers-size; a peer that never opens its window is cut by
--timeout-write. Each ends in GOAWAY, a log line and a closed connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

from steadyloop.asgi.cycle import ClientDisconnected
from steadyloop.http.parser import RequestHead
from steadyloop.observe.inflight import INFLIGHT
from steadyloop.protocols.http2.engine import Engine
from steadyloop.protocols.http2.floods import FloodLimits
from steadyloop.protocols.http2.hpackin import RememberingDecoder
from steadyloop.protocols.http2.hpackout import StaticEncoder
from steadyloop.protocols.http2.requests import MalformedHeaders, build_request, check_trailers, scope_for
from steadyloop.protocols.http2.stream import Http2StreamCycle
from steadyloop.protocols.shared import ServerState, log_request
from steadyloop.protocols.tls import tls_extension

logger = logging.getLogger("steadyloop.error")

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_Task = asyncio.Task
_E = h2.events
_NO_ERROR = h2.errors.ErrorCodes.NO_ERROR
_CALM = h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


def start_http2(
    state: ServerState,
    transport: asyncio.Transport,
    data: bytes = b"",
    upgrade: tuple[RequestHead, bytes] | None = None,
) -> None:
    """Hand a transport over to HTTP/2. `data`: bytes already read (the preface);
    `upgrade`: the HTTP/1.1 request that asked for h2c and its HTTP2-Settings value."""
    conn = Http2Connection(state, upgrade)
    transport.set_protocol(conn)
    conn.connection_made(transport)
    if data:
        conn.data_received(data)


class Http2Connection(asyncio.Protocol):
    def __init__(self, state: ServerState, upgrade: tuple[RequestHead, bytes] | None = None) -> None:
        self.state = state
        self.loop = state.loop
        self.done = state.done
        self.upgrade = upgrade
        self.h2 = Engine(
            h2.config.H2Configuration(
                client_side=False,
                header_encoding=None,
                # Response headers are lower-cased and checked for CR/LF/NUL by the stream
                # (`Http2StreamCycle._write_head`); the engine's second pass cost a third of
                # the time of a small response. What clients send is still fully checked.
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
                # What clients send is checked by `build_request` and `check_trailers`, in
                # one pass rather than the engine's seven (an eighth of a small request's cost).
                validate_inbound_headers=False,
                normalize_inbound_headers=False,
            )
        )
        # Response headers without the dynamic table: cheaper, and cacheable (hpackout.py).
        self.h2.encoder = StaticEncoder()  # type: ignore[assignment]
        # Request blocks a client repeats are decoded once while the table stays (hpackin.py).
        decoder = RememberingDecoder()
        decoder.max_header_list_size = self.h2.decoder.max_header_list_size
        self.h2.decoder = decoder
        self.streams: dict[int, Http2StreamCycle] = {}
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int | None] | None = None
        self.scheme = "http"
        self.tls_extension: dict[str, Any] | None = None
        self.write_paused = False
        self.write_scheduled = False  # a write_out is queued for this loop iteration
        self.write_buffered = 0  # the transport's unsent bytes at the last sweep
        self.write_stall_since = 0.0
        self.drain_waiter: asyncio.Future[None] | None = None
        self.floods = FloodLimits(state.config.http2.max_concurrent_streams)
        self.unread = 0  # request body received and not yet read by the apps, all streams
        self.unread_limit = state.config.http2.initial_connection_window_size
        self.connection_owed = 0  # connection window held back while `unread` is over the limit
        self.closing = False
        self.closing_since = 0.0
        self.goaway_sent = False
        self.last_stream_id = 0  # streams above this are refused once GOAWAY is out
        self.idle_since = state.now
        self.data_since = state.now
        self.ping_sent_at = 0.0
        self.extra_block = b""  # state.head_extra_block as last turned into header pairs
        self.extra_pairs: list[tuple[bytes, bytes]] = []

    # -- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        state = self.state
        state.connections.add(self)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.client = (str(peer[0]), int(peer[1]))
        sock_name = transport.get_extra_info("sockname")
        if isinstance(sock_name, tuple) and len(sock_name) >= 2:
            self.server = (str(sock_name[0]), int(sock_name[1]))
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.scheme = "https"
            if state.config.tls.cert_reqs:
                self.tls_extension = tls_extension(ssl_object)
        options = state.config.http2
        settings = {
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: options.max_concurrent_streams,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: options.initial_stream_window_size,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: options.max_frame_size,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: options.max_headers_size,
            h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 0,
        }
        engine = self.h2
        engine.local_settings = h2.settings.Settings(client=False, initial_values=settings)
        # The engine enforces the header list bound while it decodes (an HPACK bomb stops
        # there, not after inflating); RFC 9113 §6.5.2 SETTINGS_MAX_HEADER_LIST_SIZE.
        engine.decoder.max_header_list_size = options.max_headers_size
        engine.max_inbound_frame_size = options.max_frame_size
        if self.upgrade is not None:
            head, settings_value = self.upgrade
            engine.initiate_upgrade_connection(settings_value)
        else:
            engine.initiate_connection()
        extra = options.initial_connection_window_size - 65535
        if extra > 0:
            engine.increment_flow_control_window(extra)
        self.flush()
        if self.upgrade is not None:
            # The request that asked for the upgrade is stream 1, its body already complete
            # -- RFC 7540 §3.2
            if self._open_stream(1, head):
                self.streams[1].end_body()
            self.flush()

    def data_received(self, data: bytes) -> None:
        self.data_since = self.state.now
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._protocol_error(exc)
            return
        try:
            for event in events:
                if self.closing and self.transport.is_closing():
                    return  # cut off (a flood): the rest of what it sent is not served
                self._on_event(event)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            logger.exception("error while reading HTTP/2 frames; closing the connection from %s", self.client)
            self.closing = True
            self.transport.abort()
            return
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        state = self.state
        state.connections.discard(self)
        self.closing = True
        streams = list(self.streams.values())
        self.streams.clear()
        for cycle in streams:
            cycle.on_disconnect()
        self._wake_drain()
        state.check_idle()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_drain()

    def _wake_drain(self) -> None:
        waiter = self.drain_waiter
        if waiter is not None:
            self.drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- frames to streams -------------------------------------------------------------------

    def _on_event(self, event: Any) -> None:
        kind = type(event)
        if kind is _E.DataReceived:
            self._on_data(event)
        elif kind is _E.RequestReceived:
            self._on_request(event)
        elif kind is _E.StreamEnded:
            cycle = self.streams.get(event.stream_id)
            if cycle is not None:
                cycle.end_body()
        elif kind is _E.StreamReset:
            self._on_reset(event.stream_id)
        elif kind is _E.WindowUpdated or kind is _E.RemoteSettingsChanged:
            for cycle in list(self.streams.values()):
                cycle.window_opened()
            if kind is _E.RemoteSettingsChanged and self.floods.settings(self.state.now):
                self._calm_down("SETTINGS flood")
        elif kind is _E.PingReceived:
            if self.floods.ping(self.state.now):
                self._calm_down("PING flood")
        elif kind is _E.TrailersReceived:
            try:
                check_trailers(event.headers)
            except MalformedHeaders as exc:
                self._malformed_block(str(exc))
        elif kind is _E.PingAckReceived:
            self.ping_sent_at = 0.0
        elif kind is _E.ConnectionTerminated:
            self.closing = True
            self.transport.close()

    def _on_request(self, event: Any) -> None:
        sid = event.stream_id
        if self.goaway_sent and sid > self.last_stream_id:
            # After our GOAWAY: "the sender will ignore frames sent on streams initiated by
            # the receiver if the stream has an identifier higher than the included last
            # stream identifier" -- RFC 9113 §6.8; refused, so the client may retry elsewhere.
            self.h2.reset_stream(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        try:
            head = build_request(event.headers)
        except MalformedHeaders as exc:
            self._malformed_block(str(exc))
            return
        except ValueError as exc:
            self._malformed(sid, str(exc))
            return
        self._open_stream(sid, head)

    def _open_stream(self, sid: int, head: RequestHead) -> bool:
        try:
            scope = self._scope(head)
        except ValueError as exc:
            self._malformed(sid, str(exc))
            return False
        self._start_stream(sid, head, scope)
        return True

    def _malformed(self, sid: int, why: str) -> None:
        # A malformed request is a stream error of type PROTOCOL_ERROR -- RFC 9113 §8.1.1
        logger.info("refused an HTTP/2 request from %s: %s", _peer(self.client), why)
        self.h2.reset_stream(sid, h2.errors.ErrorCodes.PROTOCOL_ERROR)

    def _malformed_block(self, why: str) -> None:
        """A header block that breaks HTTP/2's field rules: a connection error, GOAWAY
        PROTOCOL_ERROR and close (as when the engine validated header blocks itself)."""
        logger.info("HTTP/2 protocol error from %s: %s; GOAWAY and close", _peer(self.client), why)
        self.h2.close_connection(h2.errors.ErrorCodes.PROTOCOL_ERROR)
        self._close_now()

    def _on_data(self, event: Any) -> None:
        size = event.flow_controlled_length
        sid = event.stream_id
        cycle = self.streams.get(sid)
        data = event.data
        if not data or cycle is None or cycle.disconnected:
            if not data and not event.stream_ended and self.floods.empty_data(self.state.now):
                self._calm_down("empty DATA frame flood")
            if size:  # padding, or body nobody will read: nothing is held for it
                self.h2.increment_flow_control_window(size)
                if cycle is not None and not cycle.disconnected:
                    self.h2.increment_flow_control_window(size, stream_id=sid)
            return
        padding = size - len(data)
        if padding:
            self.h2.increment_flow_control_window(padding)
            self.h2.increment_flow_control_window(padding, stream_id=sid)
        # The stream window reopens only as its app reads (`body_taken`). The connection
        # window reopens at once while the unread body of all streams stays within one
        # connection window, so one slow app does not stall the others, and a connection
        # never holds more than twice --http2-initial-connection-window-size.
        self.unread += len(data)
        if self.unread <= self.unread_limit:
            self.h2.increment_flow_control_window(len(data))
        else:
            self.connection_owed += len(data)
        cycle.feed_body(data)

    def _forget(self, cycle: Http2StreamCycle) -> None:
        """A stream leaves: the body it never read no longer counts against the connection."""
        self.streams.pop(cycle.stream_id, None)
        if cycle.body_size:
            self._release(cycle.body_size)

    def _release(self, size: int) -> None:
        self.unread -= size
        if self.connection_owed and self.unread <= self.unread_limit and not self.closing:
            self.h2.increment_flow_control_window(self.connection_owed)
            self.connection_owed = 0
            self.flush()

    def _on_reset(self, sid: int) -> None:
        cycle = self.streams.get(sid)
        if cycle is None:
            return
        self._forget(cycle)
        if not cycle.response_complete:
            cycle.cut_short = "reset by client"
            # CVE-2023-44487: a client that opens and cancels streams at once keeps the
            # server starting work it never has to wait for. Counted, and cut.
            if self.floods.reset(self.state.now):
                self._calm_down("rapid reset (streams opened and cancelled)")
        cycle.on_disconnect()

    def _start_stream(self, sid: int, head: RequestHead, scope: dict[str, Any]) -> None:
        state = self.state
        limit = state.config.limits.concurrency
        timed = state.access_log is not None or state.metrics is not None
        cycle = Http2StreamCycle(self, scope, head, time.perf_counter() if timed else 0.0)
        cycle.stream_id = sid
        self.streams[sid] = cycle
        if limit is not None and state.tasks >= limit:
            self._answer(cycle, 503, b"concurrency limit reached\n")
            return
        try:
            coro = state.app(scope, cycle.receive, cycle.send)
            task: asyncio.Task[None]
            if state.plain_tasks:  # a fixed name: CPython would format "Task-N" for each
                task = _Task(coro, loop=self.loop, name="steadyloop-h2-stream")  # type: ignore[arg-type]
            else:
                task = self.loop.create_task(coro)  # type: ignore[arg-type]  # the loop's factory
        except Exception as exc:
            self._app_failed(cycle, exc)
            return
        state.tasks += 1
        INFLIGHT[task] = cycle
        task.add_done_callback(self._task_done)

    def _scope(self, head: RequestHead) -> dict[str, Any]:
        state = self.state
        client = self.client
        scheme = self.scheme
        if head.forwarded and state.trusts(client[0] if client else None):
            client, scheme = state.proxies.forwarded(head.headers, client, scheme)
        return scope_for(head, state, client, self.server, scheme, self.tls_extension)

    # -- called by the stream cycles ---------------------------------------------------------

    def flush(self) -> None:
        """Write what the engine has queued, at the end of this loop iteration: the frames
        of every stream that answered in it go out in one write (one syscall), not one
        write per stream."""
        if not self.write_scheduled:
            self.write_scheduled = True
            self.loop.call_soon(self.write_out)

    def write_out(self) -> None:
        self.write_scheduled = False
        data = self.h2.data_to_send()
        if data and not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        if not self.write_paused or self.transport.is_closing():
            return
        waiter = self.drain_waiter
        if waiter is None:
            waiter = self.drain_waiter = self.loop.create_future()
        await waiter

    def pause_reading(self) -> None:
        """Not needed: the stream window bounds what a client may send ahead of the app."""

    def resume_reading(self) -> None:
        """See pause_reading."""

    def body_taken(self, stream_id: int, size: int, more: bool) -> None:
        """The app took `size` body bytes of a stream; `more`: its body is not complete, so
        the peer may send that much more on the stream."""
        if stream_id not in self.streams or self.closing:
            return  # released when the stream left (`_forget`)
        self._release(size)
        if more:
            try:
                self.h2.increment_flow_control_window(size, stream_id=stream_id)
            except h2.exceptions.StreamClosedError:
                return  # the request ended meanwhile; nothing more will come
            self.flush()

    def extra_headers(self) -> list[tuple[bytes, bytes]]:
        """Date, Server and --header, as header pairs (rebuilt when the block changes)."""
        block = self.state.head_extra_block
        if block is not self.extra_block:
            self.extra_block = block
            pairs = []
            for line in block.split(b"\r\n"):
                name, sep, value = line.partition(b": ")
                if sep:
                    pairs.append((name, value))
            self.extra_pairs = pairs
        return self.extra_pairs

    def response_complete(self, cycle: Http2StreamCycle) -> None:
        state = self.state
        state.request_done(cycle.status, "2", cycle.started_at)
        if state.access_log is not None:
            log_request(state.access_log, cycle)
        if self.streams.get(cycle.stream_id) is cycle:
            self._forget(cycle)
            if not cycle.body_complete and not cycle.disconnected and not self.closing:
                self._stop_request_body(cycle.stream_id)
        if not self.streams:
            self.idle_since = time.monotonic()
            if self.goaway_sent or state.shutting_down:
                self._close_when_done()

    def _stop_request_body(self, sid: int) -> None:
        """Answered before the whole body came: "a server MAY request that the client abort
        transmission of a request without error by sending a RST_STREAM with an error code of
        NO_ERROR after sending a complete response" -- RFC 9113 §8.1. (The engine may know
        already that the body is complete: END_STREAM was in a frame it has read.)"""
        stream = self.h2.streams.get(sid)
        if stream is not None and not stream.closed:
            self.h2.reset_stream(sid, _NO_ERROR)
            self.flush()

    # -- app tasks ---------------------------------------------------------------------------

    def _task_done(self, task: asyncio.Task[None]) -> None:
        state = self.state
        state.tasks -= 1
        cycle = INFLIGHT.pop(task)
        assert isinstance(cycle, Http2StreamCycle)
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:
                self._app_failed(cycle, exc)
            elif not cycle.response_complete and not cycle.disconnected:
                logger.error(
                    "ASGI app returned without completing the response (%s %s)", cycle.method, cycle.path
                )
                self._end_failed(cycle)
        elif not cycle.response_complete:
            self._app_failed(cycle, None)
        if state.shutting_down:
            state.check_idle()

    def _app_failed(self, cycle: Http2StreamCycle, exc: BaseException | None) -> None:
        if isinstance(exc, ClientDisconnected) or cycle.disconnected:
            return
        if exc is not None:
            logger.error(
                "Exception in application (%s %s)",
                cycle.method,
                cycle.path,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
        if not cycle.response_complete:
            self._end_failed(cycle)

    def _end_failed(self, cycle: Http2StreamCycle) -> None:
        if self.transport.is_closing() or cycle.stream_id not in self.streams:
            return
        if cycle.head_written:
            # Part of the response is out: only this stream is cut, the connection lives.
            self._forget(cycle)
            cycle.pending = b""
            self.h2.reset_stream(cycle.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
            self.flush()
            return
        self._answer(cycle, 500, b"Internal Server Error\n")

    def _answer(self, cycle: Http2StreamCycle, status: int, body: bytes) -> None:
        """A response from the server itself (500, 503)."""
        cycle.response_started = True
        cycle.status = status
        cycle.response_headers = [(b"content-type", b"text/plain; charset=utf-8")]
        cycle._send_body(body, False)

    # -- refusing a peer ---------------------------------------------------------------------

    def _protocol_error(self, exc: h2.exceptions.ProtocolError) -> None:
        """The engine found a connection error; it has queued a GOAWAY with the code."""
        logger.info("HTTP/2 protocol error from %s: %s; GOAWAY and close", _peer(self.client), exc)
        self._close_now()

    def _calm_down(self, what: str) -> None:
        logger.warning("%s from %s: GOAWAY (ENHANCE_YOUR_CALM) and close", what, _peer(self.client))
        if not self.closing:
            self.h2.close_connection(_CALM, additional_data=what.encode("ascii"))
        self._close_now()

    def _close_now(self) -> None:
        self.write_out()
        self.closing = True
        streams = list(self.streams.values())
        self.streams.clear()
        for cycle in streams:
            cycle.on_disconnect()
        self.transport.close()

    def _goaway(self) -> None:
        """A graceful GOAWAY: streams up to the last one received still finish.

        Written by hand rather than by the engine, which would refuse to send or receive
        anything more on the connection once it has sent GOAWAY."""
        if self.goaway_sent:
            return
        self.goaway_sent = True
        self.last_stream_id = self.h2.highest_inbound_stream_id
        frame = GoAwayFrame(0)
        frame.last_stream_id = self.last_stream_id
        frame.error_code = _NO_ERROR
        self.write_out()
        if not self.transport.is_closing():
            self.transport.write(frame.serialize())

    def _close_when_done(self) -> None:
        self.write_out()  # the last stream's final frames, queued in the engine
        self._goaway()
        if not self.closing:
            self.closing = True
            self.closing_since = self.state.now
            self.transport.close()

    # -- the connection interface (steadyloop.protocols.base.Connection) ---------------------

    def is_idle(self) -> bool:
        return not self.streams

    def shutdown(self) -> None:
        """GOAWAY with the last stream id; open streams finish, then the connection closes."""
        self._goaway()
        if not self.streams:
            self._close_when_done()

    def abort(self) -> None:
        self.transport.abort()

    def check_timeouts(self, now: float) -> None:
        if self.closing:
            return
        timeouts = self.state.config.timeouts
        if not self.streams:
            if now - self.idle_since >= timeouts.keep_alive and now - self.data_since >= timeouts.keep_alive:
                self._close_when_done()
                return
        elif timeouts.write:
            if self._write_stalled(now, timeouts.write):
                logger.info("HTTP/2 peer %s took no bytes for %ss: cut", _peer(self.client), timeouts.write)
                self._close_now()
                self.transport.abort()
                return
            for cycle in self.streams.values():
                if cycle.pending:
                    if not cycle.stalled_since:
                        cycle.stalled_since = now
                    elif now - cycle.stalled_since >= timeouts.write:
                        # The peer keeps its window shut: our response can never finish.
                        self._calm_down(f"no flow-control window opened for {timeouts.write}s")
                        return
        self._keep_alive(now)

    def _write_stalled(self, now: float, limit: float) -> bool:
        """Has the peer taken no bytes from the socket for `limit` seconds? (As for HTTP/1.1:
        progress, not total time.)"""
        size = self.transport.get_write_buffer_size()
        if size == 0 or size < self.write_buffered or not self.write_buffered:
            self.write_stall_since = now
        self.write_buffered = size
        return now - self.write_stall_since >= limit

    def _keep_alive(self, now: float) -> None:
        options = self.state.config.http2
        if options.keep_alive_interval is None:
            return
        if self.ping_sent_at:
            if now - self.ping_sent_at >= options.keep_alive_timeout:
                logger.info("HTTP/2 peer %s did not answer PING: closing", _peer(self.client))
                self.h2.close_connection(_NO_ERROR)
                self._close_now()
        elif now - self.data_since >= options.keep_alive_interval:
            self.ping_sent_at = now
            self.h2.ping(b"stdyloop")
            self.flush()


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "unix socket"
