"""WebSocketConnection through a fake transport: the handshake, frames and ASGI rules, no network.

The test plays the client with the `websockets` engine's client side, which masks
frames as a browser does and parses what the server writes back.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import CLIENT, Protocol

from steadyloop.observe.metrics.requests import RequestCounters
from steadyloop.protocols.websocket.connection import WebSocketConnection
from steadyloop.protocols.websocket.handshake import accept_key
from tests.protocols.fakes import FakeTransport, Harness

KEY = base64.b64encode(os.urandom(16))


def handshake(path: bytes = b"/ws", extra: bytes = b"", version: bytes = b"13", key: bytes = KEY) -> bytes:
    return (
        b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: " + version + b"\r\nSec-WebSocket-Key: " + key + b"\r\n" + extra + b"\r\n"
    )


def frame(opcode: Opcode, data: bytes, fin: bool = True, mask: bool = True, rsv1: bool = False) -> bytes:
    wire = Frame(opcode, data, fin).serialize(mask=mask, extensions=[])
    return bytes([wire[0] | 0x40]) + wire[1:] if rsv1 else wire


class Peer:
    """The client end: reads what the server wrote, as frames."""

    def __init__(self, transport: FakeTransport) -> None:
        self.transport = transport
        self.engine = Protocol(CLIENT, max_size=None)

    def frames(self) -> list[Frame]:
        self.engine.receive_data(self.transport.take())
        return [e for e in self.engine.events_received() if isinstance(e, Frame)]


heard: list[Any] = []


async def echo(scope: Any, receive: Any, send: Any) -> None:
    heard.append(scope)
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        heard.append(message)
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})


@pytest.fixture(autouse=True)
def _clear() -> Iterator[None]:
    heard.clear()
    yield
    heard.clear()


def opened(app: Any = echo, **config: Any) -> tuple[Harness, Any, FakeTransport, Peer]:
    harness = Harness(app, **config)
    conn, transport = harness.connect()
    harness.feed(conn, handshake(b"/ws?room=1", b"Sec-WebSocket-Protocol: chat, json\r\n"))
    head, _, rest = transport.take().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), head
    assert b"sec-websocket-accept: " + accept_key(KEY) in head
    ws = transport.protocol
    assert isinstance(ws, WebSocketConnection)
    transport.written += rest
    return harness, ws, transport, Peer(transport)


def test_the_upgrade_hands_the_socket_to_a_websocket_session_with_a_full_scope() -> None:
    harness, ws, _transport, peer = opened()
    try:
        assert ws in harness.state.connections and len(harness.state.connections) == 1
        scope = heard[0]
        assert scope["type"] == "websocket" and scope["scheme"] == "ws"
        assert scope["path"] == "/ws" and scope["raw_path"] == b"/ws" and scope["query_string"] == b"room=1"
        assert scope["subprotocols"] == ["chat", "json"]
        assert scope["extensions"] == {"websocket.http.response": {}}
        assert scope["http_version"] == "1.1" and scope["asgi"]["version"] == "3.0"
        assert scope["client"] == ("10.0.0.7", 50000) and scope["server"] == ("127.0.0.1", 8000)
        assert "method" not in scope and scope["root_path"] == "" and scope["state"] == {}
        assert (b"sec-websocket-protocol", b"chat, json") in scope["headers"]
        harness.feed(ws, frame(Opcode.TEXT, b"hi"))
        (reply,) = peer.frames()
        assert reply.opcode is Opcode.TEXT and reply.data == b"hi"
        assert harness.state.tasks == 1
    finally:
        harness.close()


def test_fragments_with_a_ping_between_them_make_one_message_and_a_pong() -> None:
    harness, ws, _transport, peer = opened()
    try:
        harness.feed(ws, frame(Opcode.TEXT, "hé".encode()[:2], fin=False))
        harness.feed(ws, frame(Opcode.PING, b"p"))
        harness.feed(ws, frame(Opcode.CONT, "hé".encode()[2:], fin=True))
        frames = peer.frames()
        assert [(f.opcode, f.data) for f in frames] == [(Opcode.PONG, b"p"), (Opcode.TEXT, "hé".encode())]
        harness.feed(ws, frame(Opcode.BINARY, b"\x00", fin=False) + frame(Opcode.CONT, b"\xff"))
        assert [(f.opcode, f.data) for f in peer.frames()] == [(Opcode.BINARY, b"\x00\xff")]
    finally:
        harness.close()


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(Opcode.TEXT, b"\xff\xfe"), 1007),  # not UTF-8
        (frame(Opcode.TEXT, b"ab\xc3", fin=False), 1007),  # a fragment that cannot become UTF-8... yet
        (frame(Opcode.TEXT, b"x", mask=False), 1002),  # clients must mask
        (frame(Opcode.TEXT, b"x", rsv1=True), 1002),  # a reserved bit with no extension
        (frame(Opcode.CONT, b"x"), 1002),  # a continuation of nothing
        (frame(Opcode.CLOSE, b"\x03\xe7"), 1002),  # close code 999 is not a valid code
        (frame(Opcode.BINARY, b"x" * 101), 1009),  # over --ws-max-size
    ],
)
def test_a_bad_frame_fails_the_connection_with_its_code(data: bytes, code: int) -> None:
    harness, ws, transport, peer = opened(ws_max_size=100)
    try:
        harness.feed(ws, data)
        frames = peer.frames()
        if code == 1007 and not frames:
            # A truncated UTF-8 sequence at a fragment's end may still complete: the verdict
            # comes with the byte that proves it invalid.
            harness.feed(ws, frame(Opcode.CONT, b"(", fin=True))
            frames = peer.frames()
        assert frames[-1].opcode is Opcode.CLOSE
        assert Close.parse(frames[-1].data).code == code
        assert transport.eof_written  # the server closes TCP first -- RFC 6455 §7.1.1
        assert heard[-1] == {"type": "websocket.disconnect", "code": code, "reason": heard[-1]["reason"]}
    finally:
        harness.close()


def test_the_peer_closing_gives_the_app_its_code_and_reason_and_an_echoed_close() -> None:
    harness, ws, transport, peer = opened()
    try:
        harness.feed(ws, frame(Opcode.CLOSE, Close(4000, "bye").serialize()))
        (reply,) = peer.frames()
        assert Close.parse(reply.data) == Close(4000, "bye")
        assert heard[-1] == {"type": "websocket.disconnect", "code": 4000, "reason": "bye"}
        assert transport.eof_written
        assert harness.state.requests == 0
        transport.close()  # the peer closes its side too
        harness.settle()
        assert harness.state.requests == 1 and not harness.state.connections  # counted once
    finally:
        harness.close()


async def closes_with_a_reason(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept", "headers": [(b"x-room", b"1")]})
    await send({"type": "websocket.close", "code": 4001, "reason": "done"})
    with pytest.raises(OSError):
        await send({"type": "websocket.send", "text": "too late"})
    heard.append(await receive())


def test_the_app_closing_sends_its_code_and_reason_then_hears_the_peer() -> None:
    harness = Harness(closes_with_a_reason)
    try:
        conn, transport = harness.connect()
        harness.feed(conn, handshake())
        head, _, rest = transport.take().partition(b"\r\n\r\n")
        assert b"\r\nx-room: 1\r\n" in head
        transport.written += rest
        (closing,) = Peer(transport).frames()
        assert Close.parse(closing.data) == Close(4001, "done")
        harness.feed(transport.protocol, frame(Opcode.CLOSE, Close(4001, "done").serialize()))
        assert heard == [{"type": "websocket.disconnect", "code": 4001, "reason": "done"}]
        assert transport.eof_written
    finally:
        harness.close()


async def refuses(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.close"})


async def denies(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.http.response.start", "status": 401, "headers": [(b"x-why", b"token")]})
    await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b"entry"})


async def fails_before_accept(scope: Any, receive: Any, send: Any) -> None:
    raise ValueError("boom")


async def fails_after_accept(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    raise ValueError("boom")


@pytest.mark.parametrize(
    ("app", "status", "body"),
    [(refuses, 403, b"Forbidden\n"), (denies, 401, b"no entry"), (fails_before_accept, 500, None)],
)
def test_a_handshake_the_app_does_not_accept_is_answered_with_http(app: Any, status: int, body: Any) -> None:
    harness = Harness(app)
    try:
        conn, transport = harness.connect()
        harness.feed(conn, handshake())
        out = transport.take()
        assert out.startswith(b"HTTP/1.1 %d " % status)
        assert b"connection: close\r\n" in out
        if body is not None:
            assert out.endswith(b"\r\n\r\n" + body)
        if app is denies:
            assert b"x-why: token\r\n" in out
        assert transport.closing
    finally:
        harness.close()


def test_an_app_failing_after_accept_closes_with_1011() -> None:
    harness = Harness(fails_after_accept)
    try:
        conn, transport = harness.connect()
        harness.feed(conn, handshake())
        transport.written[:] = transport.take().partition(b"\r\n\r\n")[2]
        (closing,) = Peer(transport).frames()
        assert Close.parse(closing.data).code == 1011
    finally:
        harness.close()


@pytest.mark.parametrize(
    ("request_bytes", "status", "header"),
    [
        (handshake(version=b"8"), 426, b"sec-websocket-version: 13\r\n"),
        (handshake(key=b"short"), 400, b""),
        (handshake().replace(b"Sec-WebSocket-Key", b"X-Key"), 400, b""),
        (handshake().replace(b"GET", b"POST"), 400, b""),
    ],
)
def test_an_invalid_handshake_is_refused_before_the_app_runs(
    request_bytes: bytes, status: int, header: bytes
) -> None:
    harness = Harness(echo)
    try:
        conn, transport = harness.connect()
        harness.feed(conn, request_bytes)
        out = transport.take()
        assert out.startswith(b"HTTP/1.1 %d " % status) and header in out
        assert b"connection: close\r\n" in out and transport.closing
        assert heard == [] and harness.state.tasks == 0
    finally:
        harness.close()


async def http_only(scope: Any, receive: Any, send: Any) -> None:
    heard.append(scope["type"])
    await send({"type": "http.response.start", "status": 200})
    await send({"type": "http.response.body", "body": b"plain"})


def test_with_ws_none_an_upgrade_request_is_plain_http() -> None:
    harness = Harness(http_only, ws="none")
    try:
        conn, transport = harness.connect()
        harness.feed(conn, handshake())
        assert transport.take().startswith(b"HTTP/1.1 200 OK")
        assert heard == ["http"]
    finally:
        harness.close()


async def slow_reader(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    await asyncio.Event().wait()  # never reads


def test_a_client_faster_than_the_app_is_paused_at_max_queue_and_resumed() -> None:
    harness, ws, transport, _peer = opened(slow_reader, ws_max_queue=3)
    try:
        harness.feed(ws, frame(Opcode.TEXT, b"1") + frame(Opcode.TEXT, b"2"))
        assert transport.reading
        harness.feed(ws, frame(Opcode.TEXT, b"3"))
        assert not transport.reading
        assert harness.loop.run_until_complete(ws.receive())["text"] == "1"
        assert transport.reading
    finally:
        harness.close()


def test_send_waits_while_the_client_does_not_drain() -> None:
    harness, ws, _transport, _peer = opened(slow_reader)
    try:
        ws.pause_writing()
        pending = asyncio.ensure_future(ws.send({"type": "websocket.send", "text": "x"}), loop=harness.loop)
        harness.settle()
        assert not pending.done()
        ws.resume_writing()
        harness.settle()
        assert pending.done()
    finally:
        harness.close()


def test_shutdown_closes_with_1012_and_the_app_hears_it_at_once() -> None:
    harness, ws, transport, peer = opened()
    try:
        assert not ws.is_idle()
        ws.shutdown()
        harness.settle()
        (closing,) = peer.frames()
        assert Close.parse(closing.data).code == 1012
        assert heard[-1]["type"] == "websocket.disconnect" and heard[-1]["code"] == 1012
        assert harness.state.tasks == 0
        harness.feed(ws, frame(Opcode.CLOSE, Close(1012, "").serialize()))
        harness.settle()
        assert transport.eof_written
    finally:
        harness.close()


def test_a_silent_peer_is_pinged_and_closed_with_1011_when_the_pong_is_late() -> None:
    harness, ws, _transport, peer = opened(slow_reader, ws_ping_interval=5, ws_ping_timeout=5)
    try:
        start = harness.state.now
        ws.check_timeouts(start + 4)
        assert peer.frames() == []
        ws.check_timeouts(start + 5)
        (ping,) = peer.frames()
        assert ping.opcode is Opcode.PING
        harness.state.now = start + 6  # the housekeeping clock when the pong arrives
        harness.feed(ws, frame(Opcode.PONG, ping.data))
        ws.check_timeouts(start + 10)  # answered, and silent for less than the interval
        assert peer.frames() == []
        ws.check_timeouts(start + 11)
        (ping,) = peer.frames()
        ws.check_timeouts(start + 15)
        assert peer.frames() == []
        ws.check_timeouts(start + 16)  # no pong within --ws-ping-timeout
        (closing,) = peer.frames()
        assert Close.parse(closing.data).code == 1011
    finally:
        harness.close()


def test_permessage_deflate_is_negotiated_with_window_and_takeover_parameters() -> None:
    offer = (
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits; "
        b"server_no_context_takeover\r\n"
    )
    for enabled, expected in [(True, True), (False, False)]:
        harness = Harness(echo, ws_per_message_deflate=enabled)
        try:
            conn, transport = harness.connect()
            harness.feed(conn, handshake(extra=offer))
            head = transport.take().partition(b"\r\n\r\n")[0]
            line = b"sec-websocket-extensions: permessage-deflate; server_no_context_takeover; "
            assert (line + b"server_max_window_bits=12; client_max_window_bits=12" in head) is expected
            assert (b"sec-websocket-extensions" in head) is expected
        finally:
            harness.close()


def test_frames_split_anyhow_and_run_together_are_read_the_same() -> None:
    stream = (
        frame(Opcode.TEXT, b"one")  # the common frame, read by hand
        + frame(Opcode.PING, b"p")  # a control frame, read by the engine
        + frame(Opcode.BINARY, b"b" * 300)  # a 16-bit length, the engine
        + frame(Opcode.TEXT, b"fr", fin=False)
        + frame(Opcode.CONT, b"ag")  # a fragmented message, the engine
        + frame(Opcode.TEXT, b"two")
    )
    # The pong is written at once; echoes come from the app's task, in order.
    expected = [
        (Opcode.PONG, b"p"),
        (Opcode.TEXT, b"one"),
        (Opcode.BINARY, b"b" * 300),
        (Opcode.TEXT, b"frag"),
        (Opcode.TEXT, b"two"),
    ]
    for pieces in ([stream], [stream[i : i + 1] for i in range(len(stream))], [stream[:7], stream[7:]]):
        harness, ws, _transport, peer = opened()
        try:
            for piece in pieces:
                ws.data_received(piece)
            harness.settle()
            frames = [(f.opcode, f.data) for f in peer.frames()]
            assert sorted(frames, key=lambda f: f[0] != Opcode.PONG) == expected
        finally:
            harness.close()


def test_a_frame_declaring_more_than_max_size_is_refused_from_its_head() -> None:
    harness, ws, _transport, peer = opened(ws_max_size=1000)
    try:
        head = bytes([0x82, 0xFF]) + (2**40).to_bytes(8, "big") + b"mask"  # 1 TiB announced
        harness.feed(ws, head + b"x" * 10)
        (closing,) = peer.frames()
        assert Close.parse(closing.data).code == 1009
    finally:
        harness.close()


def test_a_session_accepted_during_shutdown_closes_with_1012_right_after_the_101() -> None:
    harness = Harness(echo)
    try:
        harness.state.shutting_down = True
        conn, transport = harness.connect()
        harness.feed(conn, handshake())
        head, _, rest = transport.take().partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        transport.written += rest
        (closing,) = Peer(transport).frames()
        assert Close.parse(closing.data).code == 1012
        assert heard[-1]["type"] == "websocket.disconnect" and heard[-1]["code"] == 1012
    finally:
        harness.close()


def test_a_client_gone_before_accept_makes_accept_raise_oserror_not_an_app_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = asyncio.Event()

    async def late_accept(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await gate.wait()
        try:
            await send({"type": "websocket.accept"})
        except OSError:
            heard.append("accept raised OSError")
            raise
        finally:
            heard.append(await receive())

    harness = Harness(late_accept)
    try:
        conn, transport = harness.connect()
        harness.feed(conn, handshake())
        transport.close()  # the client leaves while the app decides
        harness.settle()
        harness.loop.call_soon(gate.set)
        harness.settle()
        assert heard[0] == "accept raised OSError"
        assert heard[1] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}
        assert "Exception in application" not in caplog.text
        assert harness.state.tasks == 0 and harness.state.requests == 0
    finally:
        harness.close()


def test_a_finished_session_is_one_request_in_the_metrics_as_protocol_websocket() -> None:
    harness, ws, transport, _peer = opened()
    try:
        counters = harness.state.metrics = RequestCounters()
        harness.feed(ws, frame(Opcode.CLOSE, Close(1000, "").serialize()))
        transport.close()
        harness.settle()
        assert counters.snapshot()["requests"] == {"websocket": {"1xx": 1}}
    finally:
        harness.close()
