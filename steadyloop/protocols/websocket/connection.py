"""One WebSocket session on the event loop: frames from the socket to the ASGI app and back.

Http1Connection hands the socket over after a valid opening handshake request
(`protocols.websocket.upgrade`); from then on this object is the transport's
protocol and the connection in `ServerState.connections`. The app runs as one
task with the `websocket` scope:

    bytes -> whole frames -> the common small data frame read here (framing.py),
                             any other through the engine (websockets' sans-I/O
                             Protocol: checks, pings, deflate, close rules)
          -> messages (messages.py) -> bounded queue -> app's receive()
    app's send() -> frame bytes (by hand, or the engine's with deflate) -> transport.write

Phases, as the app sees them:

    HANDSHAKE --accept--> OPEN --close (either side)--> CLOSING/CLOSED
        |--close-------------> 403, CLOSED
        '--http.response.*---> RESPONSE -> the app's HTTP answer, CLOSED

Timers cost nothing per connection: pings, their timeouts and the close
handshake's deadline are checked by the server's housekeeping sweep
(`check_timeouts`, every 0.5 s).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable
from typing import Any, cast

from websockets.extensions.base import Extension
from websockets.frames import Frame, Opcode
from websockets.protocol import OPEN as ENGINE_OPEN
from websockets.protocol import SERVER, Protocol

from steadyloop.asgi.cycle import ClientDisconnected
from steadyloop.asgi.types import Message
from steadyloop.http.errors import ResponseError
from steadyloop.http.parser import RequestHead
from steadyloop.http.response import build_head, simple_response
from steadyloop.observe.inflight import INFLIGHT
from steadyloop.protocols.shared import ServerState
from steadyloop.protocols.websocket.framing import (
    FAST_BINARY,
    FAST_TEXT,
    apply_mask,
    frame_size,
    server_frame,
)
from steadyloop.protocols.websocket.handshake import accept_head
from steadyloop.protocols.websocket.messages import Fragments, receive_message

logger = logging.getLogger("steadyloop.error")
# The engine logs "connection closed" at INFO for every socket: noise in a server's log.
_engine_logger = logging.getLogger("steadyloop.websocket.engine")
_engine_logger.setLevel(logging.WARNING)

HANDSHAKE, OPEN, RESPONSE, CLOSING, CLOSED = range(5)
_TEXT, _BINARY, _CONT, _CLOSE, _PONG = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.CLOSE, Opcode.PONG
# After our close frame (or EOF), how long the peer has to finish the closing handshake.
CLOSE_TIMEOUT = 10.0
# Bytes kept from a client that sends before our 101, which it must not: "Once the client's
# opening handshake has been sent, the client MUST wait for a response from the server before
# sending any further data" -- RFC 6455 §4.1. Past this, reading pauses.
EARLY_DATA_LIMIT = 64 * 1024
# "1012 indicates that the service is restarted. A client may reconnect" -- IANA WebSocket
# Close Code registry. Said on every graceful stop: a stopping worker is, for its clients, a
# service that will be back (a reload, a deploy, a --max-requests recycle).
SHUTDOWN_CODE = 1012
_CONNECT: Message = {"type": "websocket.connect"}


class WebSocketConnection(asyncio.Protocol):
    # What the watchdog names when this session's handler blocks the loop.
    method = "WEBSOCKET"

    def __init__(
        self,
        state: ServerState,
        transport: asyncio.Transport,
        head: RequestHead,
        scope: dict[str, Any],
        key: bytes,
        extensions: tuple[bytes | None, list[Extension]],
        request_id: str,
        client: tuple[str, int] | None,
    ) -> None:
        self.state = state
        self.loop = state.loop
        self.transport = transport
        self.head = head
        self.scope = scope
        self.path: str = scope["path"]
        self.key = key
        self.extensions = extensions
        self.request_id = request_id
        self.client = client
        self.started_at = time.perf_counter()
        self.phase = HANDSHAKE
        self.closing = False  # a close has begun (either side) or the socket is gone
        options = state.config.websocket
        self.max_queue = options.max_queue
        self.engine = Protocol(SERVER, max_size=options.max_size, logger=_engine_logger)
        self.messages: deque[Message] = deque((_CONNECT,))
        self.receive_waiter: asyncio.Future[None] | None = None
        self.disconnect: Message | None = None  # set once the session is over for the app
        self.early = b""  # bytes received before the app accepted
        self.inbuf = bytearray()  # the start of a frame whose rest has not arrived
        self.inbuf_need = 0  # the whole frame's size, once its head is here
        self.max_size = options.max_size
        self.fast = False  # read and write common frames here (no extension in use)
        self.read_paused = False
        self.write_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.fragments: Fragments | None = None  # a fragmented message in progress
        self.last_seen = state.now  # when the peer last sent anything (housekeeping clock)
        self.ping_sent_at = 0.0
        self.closing_since = 0.0  # our close frame or EOF went out; the peer must finish
        self.shutdown_requested = False
        self.close_code: int | None = None  # the code the closing handshake began with
        self.status = 0  # the handshake's HTTP answer: 101, 403, 500 or the app's
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.denial_body: list[bytes] = []
        self.bytes_sent = 0

    # -- taking over the socket --------------------------------------------------------------

    def start(self, early: bytes, read_paused: bool, write_paused: bool) -> None:
        """Become the transport's protocol and start the app. `early`: bytes already read
        behind the handshake request."""
        state = self.state
        state.connections.add(self)
        self.transport.set_protocol(self)
        self.read_paused = read_paused
        self.write_paused = write_paused
        # A handshake served in shutdown's last call: the server's sweep of open sessions
        # is over, so this one closes (1012) as soon as the app accepts.
        self.shutdown_requested = state.shutting_down
        if early:
            self.data_received(early)
        try:
            coro = state.app(self.scope, self.receive, self.send)
            task: asyncio.Task[None] = self.loop.create_task(coro, name="steadyloop-websocket")  # type: ignore[arg-type]
        except Exception as exc:  # the app's __call__ failed before it became a task
            self._app_ended(exc)
            return
        state.tasks += 1
        INFLIGHT[task] = self
        task.add_done_callback(self._task_done)

    # -- asyncio callbacks -------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.last_seen = self.state.now
        phase = self.phase
        if phase != OPEN and phase != CLOSING:
            if phase == HANDSHAKE:
                self.early += data
                if len(self.early) > EARLY_DATA_LIMIT:
                    self.pause_reading()
            return  # RESPONSE, CLOSED: nothing more is read
        try:
            self._read_frames(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            logger.exception("error while reading WebSocket frames from %s", self.client)
            self.transport.abort()

    def eof_received(self) -> bool | None:
        if self.phase == OPEN or self.phase == CLOSING:
            self.engine.receive_eof()
            self._flush()
        return None  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        state = self.state
        state.connections.discard(self)
        self.phase = CLOSED
        self.closing = True
        if self.close_code is None and self.status == 101:
            self.close_code = 1006  # "closed abnormally, without a Close frame" -- RFC 6455 §7.1.5
        self._end_for_app(1006, "")
        self._wake_drain()
        if self.status:  # the handshake was answered: a request served, like any other
            state.request_done(self.status, "websocket", self.started_at)
            if state.access_log is not None:
                self._log_access()
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

    # -- frames in ---------------------------------------------------------------------------

    def _read_frames(self, data: bytes) -> None:
        """Cut the bytes into whole frames: the common one is read here (framing.py says
        why), every other goes to the engine, whole, so that the engine is always between
        frames when a frame is read here."""
        engine = self.engine
        inbuf = self.inbuf
        if inbuf:
            inbuf += data
            if len(inbuf) < self.inbuf_need:
                return  # a large frame still arriving: append, do not re-read its head
            data = bytes(inbuf)
            self.inbuf = bytearray()
        if engine.close_rcvd is not None or engine.parser_exc is not None:
            engine.receive_data(data)  # the engine discards what follows a close or a failure
            self._process()
            return
        pos = 0
        end = len(data)
        while pos < end:
            size = frame_size(data, pos)
            if size < 0 or pos + size > end:
                if size > self.max_size + 14:
                    # Longer than any frame we accept: the engine refuses it from its head (1009)
                    # rather than us buffering it.
                    engine.receive_data(data[pos:])
                    self._process()
                    return
                self.inbuf = bytearray(data[pos:])  # the rest of this frame is on its way
                self.inbuf_need = size  # -1 while the head itself is incomplete
                return
            first = data[pos]
            second = data[pos + 1]
            if (
                self.fast
                and first in (FAST_TEXT, FAST_BINARY)
                and 0x80 <= second < 0xFE  # MASK set, a 7-bit length (not 126 or 127)
                and size - 6 <= self.max_size
                and engine.current_size is None  # not inside a fragmented message
            ):
                payload = apply_mask(data[pos + 6 : pos + size], data[pos + 2 : pos + 6])
                try:
                    self._deliver(receive_message(first == FAST_TEXT, payload))
                except UnicodeDecodeError:
                    self._fail(1007, "invalid UTF-8 in a text message")
                    return
            else:
                engine.receive_data(data[pos : pos + size])
                self._process()
                if engine.close_rcvd is not None or engine.parser_exc is not None:
                    if pos + size < end:
                        engine.receive_data(data[pos + size :])
                        self._process()
                    return
            pos += size

    def _process(self) -> None:
        engine = self.engine
        # Past the handshake a server's engine yields frames only.
        for frame in cast("list[Frame]", engine.events_received()):
            opcode = frame.opcode
            if opcode is _TEXT or opcode is _BINARY or opcode is _CONT:
                try:
                    if opcode is _CONT:
                        assert self.fragments is not None  # the engine checked the order
                        message = self.fragments.add(frame.data, frame.fin)
                    elif frame.fin:
                        message = receive_message(opcode is _TEXT, frame.data)
                    else:
                        self.fragments = Fragments(opcode is _TEXT)
                        message = self.fragments.add(frame.data, False)
                except UnicodeDecodeError:
                    self._fail(1007, "invalid UTF-8 in a text message")
                    return
                if message is not None:
                    self.fragments = None
                    self._deliver(message)
            elif opcode is _CLOSE:
                received = engine.close_rcvd
                assert received is not None
                if self.close_code is None:
                    self.close_code = received.code
                if self.phase == OPEN:
                    self.phase = CLOSING  # the engine has answered with its close frame
                self.closing = True
                self._end_for_app(received.code, received.reason)
            elif opcode is _PONG:
                self.ping_sent_at = 0.0
            # PING: the engine has queued the pong already.
        self._flush()
        if engine.parser_exc is not None:  # a protocol error: the engine has failed the connection
            self._failed(engine)

    def _deliver(self, message: Message) -> None:
        messages = self.messages
        messages.append(message)
        if len(messages) >= self.max_queue:
            self.pause_reading()  # the app is behind: let TCP push back on the client
        self._wake_receiver()

    def _wake_receiver(self) -> None:
        waiter = self.receive_waiter
        if waiter is not None:
            self.receive_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _end_for_app(self, code: int, reason: str) -> None:
        """The app's next receive() after what is queued is websocket.disconnect."""
        if self.disconnect is None:
            self.disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
            self._wake_receiver()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection -- RFC 6455 §7.1.7: close frame, EOF, nothing more is read."""
        engine = self.engine
        engine.fail(code, reason)
        self._flush()
        self._failed(engine)

    def _failed(self, engine: Protocol) -> None:
        self.closing = True
        sent = engine.close_sent
        code = sent.code if sent is not None else 1006
        if self.close_code is None:
            self.close_code = code
        self._end_for_app(code, sent.reason if sent is not None else "")

    def _flush(self) -> None:
        """Write what the engine has queued: frames, and the EOF that ends the TCP side."""
        for data in self.engine.data_to_send():
            if data:
                self.transport.write(data)
                self.bytes_sent += len(data)
            else:
                # "the underlying TCP connection, in most normal cases, SHOULD be closed first
                # by the server" -- RFC 6455 §7.1.1. Half-close, so that the peer's last bytes
                # are read rather than reset; check_timeouts cuts a peer that never closes.
                if self.transport.can_write_eof():
                    self.transport.write_eof()
                else:
                    self.transport.close()
                self.closing_since = self.state.now or time.monotonic()

    # -- the app's side: receive -------------------------------------------------------------

    def receive(self) -> Awaitable[Message]:
        if self.messages:
            # A message is waiting: answer without a coroutine.
            ready = self.loop.create_future()
            ready.set_result(self._take())
            return ready
        return self._receive()

    async def _receive(self) -> Message:
        while not self.messages:
            if self.disconnect is not None:
                return self.disconnect
            waiter = self.receive_waiter
            if waiter is None:
                waiter = self.receive_waiter = self.loop.create_future()
            await waiter
        return self._take()

    def _take(self) -> Message:
        message = self.messages.popleft()
        if self.read_paused and len(self.messages) < self.max_queue and self.phase != HANDSHAKE:
            self.resume_reading()
        return message

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()

    # -- the app's side: send ----------------------------------------------------------------

    def send(self, message: Message) -> Awaitable[None]:
        """ASGI send. A plain function: a message that needs no waiting costs no coroutine."""
        mtype = message["type"]
        if mtype == "websocket.send":
            if self.phase != OPEN or self.engine.state is not ENGINE_OPEN:
                if self.phase == HANDSHAKE:
                    raise RuntimeError("websocket.send before websocket.accept")
                raise ClientDisconnected("the WebSocket is closed")
            text = message.get("text")
            if text is not None:
                payload = text.encode()
                first = FAST_TEXT
            else:
                payload = message.get("bytes")
                if payload is None:
                    raise RuntimeError("websocket.send needs 'text' or 'bytes'")
                first = FAST_BINARY
            if self.fast:  # no extension in use: the frame is the payload and a short head
                frame = server_frame(first, payload)
                self.transport.write(frame)
                self.bytes_sent += len(frame)
            else:
                if first == FAST_TEXT:
                    self.engine.send_text(payload)
                else:
                    self.engine.send_binary(payload)
                self._flush()
            if self.write_paused:
                return self._drain()
        elif self.phase == CLOSED and mtype != "websocket.close":
            # The client left before the handshake was answered: nothing the app did wrong,
            # and (ASGI 2.4) sending on a closed connection raises an OSError.
            raise ClientDisconnected("the WebSocket is closed")
        elif mtype == "websocket.accept":
            self._accept(message)
        elif mtype == "websocket.close":
            self._app_close(message)
        elif mtype == "websocket.http.response.start":
            if self.phase != HANDSHAKE:
                raise RuntimeError(f"{mtype!r} is only possible before the handshake is answered")
            self.phase = RESPONSE
            self.status = message["status"]
            self.response_headers = list(message.get("headers", ()))
        elif mtype == "websocket.http.response.body":
            if self.phase != RESPONSE:
                raise RuntimeError(f"{mtype!r} before 'websocket.http.response.start'")
            self.denial_body.append(message.get("body", b""))
            if not message.get("more_body", False):
                self._send_denial()
        else:
            raise RuntimeError(f"unexpected ASGI message type {mtype!r} for a websocket scope")
        return self.state.done

    async def _drain(self) -> None:
        if not self.write_paused or self.transport.is_closing():
            return
        waiter = self.drain_waiter
        if waiter is None:
            waiter = self.drain_waiter = self.loop.create_future()
        await waiter

    def _accept(self, message: Message) -> None:
        if self.phase != HANDSHAKE:
            raise RuntimeError("websocket.accept sent twice, or after the handshake was answered")
        response, extensions = self.extensions
        headers = [(bytes(n).lower(), bytes(v)) for n, v in message.get("headers", ())]
        head = accept_head(
            self.key, message.get("subprotocol"), response, headers, self.state.head_extra_block
        )
        self.engine.extensions = extensions
        self.fast = not extensions
        self.transport.write(head)
        self.status = 101
        self.response_headers = headers
        self.phase = OPEN
        early, self.early = self.early, b""
        if early:
            self.data_received(early)
        if self.shutdown_requested:
            self.shutdown()
        elif self.read_paused and len(self.messages) < self.max_queue:
            self.resume_reading()

    def _app_close(self, message: Message) -> None:
        phase = self.phase
        if phase == HANDSHAKE:
            # A close before accept refuses the handshake -- ASGI websocket spec, "Close".
            self._answer_http(403, simple_response(403))
        elif phase == OPEN:
            code = message.get("code", 1000)
            reason = message.get("reason") or ""
            self._close(code, reason)
        elif phase == RESPONSE:
            raise RuntimeError("websocket.close during a websocket.http.response")
        # CLOSING, CLOSED: closed already; closing twice is harmless.

    def _close(self, code: int, reason: str) -> None:
        """Begin the closing handshake from our side."""
        engine = self.engine
        if engine.state is not ENGINE_OPEN:
            return
        engine.send_close(code, reason)
        self._flush()
        self.phase = CLOSING
        self.closing = True
        if self.close_code is None:
            self.close_code = code
        self.closing_since = self.state.now or time.monotonic()

    def _send_denial(self) -> None:
        """The websocket.http.response extension: the app's own answer to the handshake."""
        body = b"".join(self.denial_body)
        self.denial_body = []
        try:
            head, _, _, _ = build_head(
                self.status, self.response_headers, self.state.head_extra_block, True, len(body), False, False
            )
        except ResponseError:
            self.phase = HANDSHAKE  # no answer is out yet: _task_done gives a 500
            raise
        self._answer_http(self.status, head + body)

    def _answer_http(self, status: int, response: bytes) -> None:
        """Answer the handshake with an HTTP response instead of a WebSocket, and close."""
        self.status = status
        self.phase = CLOSED
        self.closing = True
        if not self.transport.is_closing():
            self.transport.write(response)
            self.bytes_sent += len(response)
            self.transport.close()
        self._end_for_app(1006, "")

    # -- the app's task ----------------------------------------------------------------------

    def _task_done(self, task: asyncio.Task[None]) -> None:
        state = self.state
        state.tasks -= 1
        INFLIGHT.pop(task, None)
        if task.cancelled():
            if self.phase != CLOSED:
                self.transport.abort()
        else:
            self._app_ended(task.exception())
        if state.shutting_down:
            state.check_idle()

    def _app_ended(self, exc: BaseException | None) -> None:
        if exc is not None and not isinstance(exc, ClientDisconnected):
            logger.error(
                "Exception in application (WEBSOCKET %s)",
                self.path,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
        phase = self.phase
        if phase in (HANDSHAKE, RESPONSE):
            if exc is None:
                logger.error("ASGI app returned without answering the WebSocket handshake (%s)", self.path)
            self._answer_http(500, simple_response(500))
        elif phase == OPEN:
            # Returned while open: the session is over. Failed: "1011 indicates that a server
            # is terminating the connection because it encountered an unexpected condition
            # that prevented it from fulfilling the request" -- RFC 6455 §7.4.1
            self._close(1000 if exc is None else 1011, "")

    # -- the connection interface (steadyloop.protocols.base.Connection) ---------------------

    def is_idle(self) -> bool:
        return self.phase == CLOSED

    def shutdown(self) -> None:
        """Server shutdown: close an open session with 1012; the app hears it at once."""
        phase = self.phase
        if phase == HANDSHAKE:
            self.shutdown_requested = True  # accepted later: closed right after the 101
        elif phase == OPEN:
            self._close(SHUTDOWN_CODE, "server shutting down")
            self._end_for_app(SHUTDOWN_CODE, "server shutting down")

    def check_timeouts(self, now: float) -> None:
        if self.closing_since:
            if now - self.closing_since >= CLOSE_TIMEOUT:
                self.transport.abort()  # a peer that never finishes the closing handshake
            return
        if self.phase != OPEN:
            return
        options = self.state.config.websocket
        if self.ping_sent_at:
            if options.ping_timeout is not None and now - self.ping_sent_at >= options.ping_timeout:
                # No pong: the peer is gone without a FIN, or takes none of our bytes.
                self._fail(1011, "keepalive ping timeout")
        elif options.ping_interval is not None and now - self.last_seen >= options.ping_interval:
            self.engine.send_ping(b"")
            self._flush()
            self.ping_sent_at = now

    def abort(self) -> None:
        self.transport.abort()

    # -- the access log ----------------------------------------------------------------------

    def _log_access(self) -> None:
        assert self.state.access_log is not None
        client = self.client
        head = self.head
        self.state.access_log.log(
            f"{client[0]}:{client[1]}" if client else "-",
            head.method,
            head.target.decode("latin-1"),
            head.http_version,
            self.status,
            self.bytes_sent,
            time.perf_counter() - self.started_at,
            self.request_id,
            head.headers,
            self.response_headers,
            f"websocket close {self.close_code}" if self.status == 101 else "",
        )
