"""WebSocket over real sockets, with the `websockets` client: sessions, refusals, limits,
deflate, many idle sockets, shutdown, and real FastAPI, Starlette and Channels apps."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.apps import websocket_apps
from tests.apps.websocket_apps import DISCONNECTS
from tests.conftest import RunningServer, running_server, wait_until


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server(websocket_apps.app) as running:
        yield running


def url(server: RunningServer, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_echo_text_and_bytes_with_subprotocol_and_app_headers(server: RunningServer) -> None:
    async def session() -> None:
        async with connect(url(server, "/echo"), subprotocols=["chat.v2", "chat.v1"]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == "chat.v2"
            assert ws.response is not None and ws.response.headers["x-session"] == "yes"
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            await ws.send(b"\x00\xff")
            assert await ws.recv() == b"\x00\xff"
            await ws.send(["frag", "mented"])
            assert await ws.recv() == "fragmented"

    run(session())


def test_the_scope_is_a_complete_websocket_scope(server: RunningServer) -> None:
    async def session() -> dict[str, Any]:
        async with connect(
            url(server, "/scope?a=1"), additional_headers={"X-Forwarded-Proto": "https"}
        ) as ws:
            return dict(json.loads(await ws.recv()))

    scope = run(session())
    assert scope["type"] == "websocket" and scope["scheme"] == "wss"  # from a trusted proxy (127.0.0.1)
    assert scope["path"] == "/scope" and scope["query_string"] == "a=1" and scope["root_path"] == ""
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"} and scope["http_version"] == "1.1"
    assert scope["client"][0] == "127.0.0.1" and scope["server"] == ["127.0.0.1", server.port]
    assert scope["subprotocols"] == [] and scope["extensions"] == {"websocket.http.response": {}}


def test_the_peer_and_the_app_closing_carry_code_and_reason(server: RunningServer) -> None:
    async def session() -> tuple[int | None, str | None]:
        async with connect(url(server, "/echo")) as ws:
            await ws.close(4010, "client done")
        async with connect(url(server, "/close")) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            return closed.value.rcvd.code, closed.value.rcvd.reason

    assert run(session()) == (4000, "app says bye")
    wait_until(lambda: {"type": "websocket.disconnect", "code": 4010, "reason": "client done"} in DISCONNECTS)


@pytest.mark.parametrize(("path", "status"), [("/refuse", 403), ("/deny", 401), ("/fail", 500)])
def test_a_handshake_the_app_does_not_accept_gets_an_http_status(
    server: RunningServer, path: str, status: int
) -> None:
    async def session() -> None:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url(server, path)):
                pass
        assert refused.value.response.status_code == status
        if path == "/deny":
            assert refused.value.response.body == b"who are you?"

    run(session())


def test_an_app_that_fails_after_accept_closes_with_1011(server: RunningServer) -> None:
    async def session() -> int | None:
        async with connect(url(server, "/fail-after")) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            return closed.value.rcvd.code if closed.value.rcvd else None

    assert run(session()) == 1011


def raw_handshake(server: RunningServer, headers: bytes, head_only: bool = False) -> bytes:
    """The server's answer: all of it up to the close, or (head_only) its head."""
    with server.connect() as sock:
        sock.sendall(
            b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + headers
            + b"\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if head_only and b"\r\n\r\n" in answer:
                break
        return answer


KEY = b"Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)) + b"\r\n"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (b"Sec-WebSocket-Version: 8\r\n" + KEY, b"426"),
        (b"Sec-WebSocket-Version: 13\r\n", b"400"),
        (b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: bm90IDE2IGJ5dGVz\r\n", b"400"),
    ],
)
def test_an_invalid_handshake_gets_a_4xx_and_a_closed_connection(
    server: RunningServer, headers: bytes, status: bytes
) -> None:
    answer = raw_handshake(server, headers)
    assert answer.startswith(b"HTTP/1.1 " + status + b" ")
    if status == b"426":
        assert b"sec-websocket-version: 13\r\n" in answer
    # ...and the worker lives on.
    good = raw_handshake(server, b"Sec-WebSocket-Version: 13\r\n" + KEY, head_only=True)
    assert good.startswith(b"HTTP/1.1 101 ")


def test_a_16_mib_message_is_echoed_and_one_byte_more_is_refused_with_1009(server: RunningServer) -> None:
    limit = 16 * 1024 * 1024

    async def session() -> int | None:
        async with connect(url(server, "/echo"), max_size=None, compression=None) as ws:
            await ws.send(b"x" * limit)
            assert len(await ws.recv()) == limit
        # Not `async with`: closing a client whose big send the server cut off trips the client.
        ws = await connect(url(server, "/echo"), max_size=None, compression=None)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.send(b"x" * (limit + 1))
            await ws.recv()
        return closed.value.rcvd.code if closed.value.rcvd else None

    assert run(session()) == 1009


@pytest.mark.parametrize("deflate", [True, False])
def test_permessage_deflate_on_and_off(deflate: bool) -> None:
    with running_server(websocket_apps.app, ws_per_message_deflate=deflate) as srv:

        async def session() -> str | None:
            async with connect(url(srv, "/echo")) as ws:
                text = "compressible " * 1000
                await ws.send(text)
                assert await ws.recv() == text
                assert ws.response is not None
                return ws.response.headers.get("sec-websocket-extensions")

        negotiated = run(session())
        if deflate:
            assert negotiated is not None and negotiated.startswith("permessage-deflate")
            assert "server_max_window_bits=12" in negotiated
        else:
            assert negotiated is None


@pytest.mark.parametrize("compression", ["deflate", None])
def test_every_frame_length_class_round_trips_whole_and_fragmented(compression: str | None) -> None:
    # 7-bit, 16-bit and 64-bit payload lengths (RFC 6455 §5.2) on both sides of each boundary,
    # as one frame and as fragments, text and binary, with and without permessage-deflate.
    sizes = [0, 1, 125, 126, 127, 65535, 65536, 100_000]
    with running_server(websocket_apps.app) as srv:

        async def session() -> None:
            async with connect(url(srv, "/echo"), compression=compression, max_size=None) as ws:
                for size in sizes:
                    text = "é" * (size // 2) + "a" * (size % 2)
                    await ws.send(text)
                    assert await ws.recv() == text
                    data = os.urandom(size)
                    await ws.send(data)
                    assert await ws.recv() == data
                    await ws.send([data[: size // 3], data[size // 3 :], b""])
                    assert await ws.recv() == data

        run(session())


def test_a_thousand_idle_sockets_stay_open_at_once(server: RunningServer) -> None:
    # Client and server ends of 1,000 sockets live in this one process.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2200:
        pytest.skip(f"the hard file limit ({hard}) is below the 2,200 descriptors this needs")
    if soft != resource.RLIM_INFINITY and soft < 4096:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (4096 if hard == resource.RLIM_INFINITY else min(4096, hard), hard)
        )

    async def session() -> int:
        sockets = await asyncio.gather(
            *(connect(url(server, "/echo"), compression=None) for _ in range(1000))
        )
        try:
            await sockets[-1].send("still here")
            assert await sockets[-1].recv() == "still here"
            return sum(1 for ws in sockets if ws.state.name == "OPEN")
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets))

    assert run(session()) == 1000


def test_limit_concurrency_counts_websocket_sessions() -> None:
    with running_server(websocket_apps.app, limit_concurrency=1) as srv:

        async def session() -> int:
            async with connect(url(srv, "/echo")):
                with pytest.raises(InvalidStatus) as refused:
                    async with connect(url(srv, "/echo")):
                        pass
                return refused.value.response.status_code

        assert run(session()) == 503


def test_shutdown_closes_open_sockets_with_1012_and_apps_hear_it() -> None:
    DISCONNECTS.clear()
    with running_server(websocket_apps.app) as srv:

        async def session() -> list[int | None]:
            sockets = [await connect(url(srv, "/echo")) for _ in range(3)]
            srv.server.request_exit()
            codes = []
            for ws in sockets:
                await ws.wait_closed()
                codes.append(ws.close_code)
            return codes

        assert run(session()) == [1012, 1012, 1012]
        wait_until(lambda: len(DISCONNECTS) == 3)
        assert {d["code"] for d in DISCONNECTS} == {1012}


def test_a_wsgi_app_refuses_the_handshake_with_403() -> None:
    def wsgi(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"wsgi"]

    with running_server(wsgi, interface="wsgi") as srv:

        async def session() -> int:
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url(srv, "/")):
                    pass
            return refused.value.response.status_code

        assert run(session()) == 403


def test_ws_none_serves_an_upgrade_request_as_plain_http() -> None:
    with running_server(websocket_apps.app, ws="none") as srv:
        answer = raw_handshake(srv, b"Sec-WebSocket-Version: 13\r\n" + KEY)
        assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"http /echo")


# -- real frameworks ------------------------------------------------------------------------------


def test_fastapi_websocket_endpoint() -> None:
    DISCONNECTS.clear()
    with running_server(websocket_apps.fastapi_app) as srv:

        async def session() -> Any:
            async with connect(url(srv, "/ws/lobby")) as ws:
                await ws.send(json.dumps({"n": 1}))
                return json.loads(await ws.recv())

        assert run(session()) == {"room": "lobby", "got": {"n": 1}}
        wait_until(lambda: {"framework": "fastapi", "code": 1000} in DISCONNECTS)


def test_starlette_websocket_route() -> None:
    with running_server(websocket_apps.starlette_app) as srv:

        async def session() -> tuple[str | None, Any]:
            async with connect(url(srv, "/ws"), subprotocols=["v1"]) as ws:  # type: ignore[list-item]
                await ws.send("shout")
                return ws.subprotocol, await ws.recv()

        assert run(session()) == ("v1", "SHOUT")


def test_django_channels_consumer() -> None:
    pytest.importorskip("channels")
    with running_server(websocket_apps.channels_app(), lifespan="off") as srv:

        async def session() -> list[Any]:
            async with connect(url(srv, "/count/ada")) as ws:
                replies = []
                for n in (2, 3):
                    await ws.send(json.dumps({"add": n}))
                    replies.append(json.loads(await ws.recv()))
                return replies

        assert run(session()) == [{"count": 2, "user": "ada"}, {"count": 5, "user": "ada"}]
