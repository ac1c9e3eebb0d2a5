"""Edges of the request path, over real sockets: apps that fail mid-response, app headers
that would split a response, 100 Continue, the concurrency limit, lingering closes, and
bodies that stop arriving."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import running_server, wait_until
from rawhttp import RawClient, get


async def respond(send: Any, status: int = 200, body: bytes = b"ok") -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def test_an_app_raising_after_its_response_leaves_the_response_whole() -> None:
    big = os.urandom(8 * 1024 * 1024)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await respond(send, 200, big)
        if scope["path"] == "/raise":
            raise RuntimeError("after the response")

    with running_server(app, lifespan="off") as running, RawClient.connect(running.port) as client:
        client.send(b"GET /raise HTTP/1.1\r\nHost: a\r\n\r\n")
        response = client.response()
        assert response.status == 200
        assert response.body == big  # not cut short by an abort
        assert client.request(b"GET", b"/").status == 200  # and the connection lives on


def test_conflicting_content_lengths_from_the_app_are_refused() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"content-length", b"100"), (b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    with running_server(app, lifespan="off") as running, RawClient.connect(running.port) as client:
        client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        response = client.response()
        assert response.status == 500
        assert response.header_all(b"content-length") == [str(len(response.body)).encode()]


def test_pathsend_never_sends_more_than_the_announced_length(tmp_path: Path) -> None:
    path = tmp_path / "grown.bin"
    path.write_bytes(b"0123456789ABCDEFGHIJ")  # 20 bytes; the app announces 5

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/file":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
            await send({"type": "http.response.pathsend", "path": str(path)})
        else:
            await respond(send)

    with running_server(app, lifespan="off") as running, RawClient.connect(running.port) as client:
        client.send(b"GET /file HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
        response = client.response()
        assert response.body == b"01234"
        # The rest of the file must not be read as the next response: the connection closes.
        assert client.read_to_close() == b""


def test_100_continue_is_never_written_inside_a_started_response() -> None:
    async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"start;", "more_body": True})
        task = asyncio.ensure_future(receive())  # asks for the body after the head is out
        await asyncio.sleep(0)
        task.cancel()
        await send({"type": "http.response.body", "body": b"end", "more_body": False})

    with running_server(echo, lifespan="off") as running, RawClient.connect(running.port) as client:
        client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        response = client.response()
        assert response.status == 200
        assert b"100 Continue" not in response.raw_head + response.body
        assert response.body == b"start;end"
        client.assert_closed()  # the body never came: the connection cannot be reused


def test_no_100_continue_for_an_http_10_client() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        message = await receive()
        await respond(send, 200, message["body"])

    with running_server(app, lifespan="off") as running, RawClient.connect(running.port) as client:
        client.send(b"POST / HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        assert client.silent_for(0.3)  # no interim response: HTTP/1.0 knows no 1xx
        client.send(b"abc")
        response = client.response()
        assert response.status == 200
        assert response.body == b"abc"


def test_concurrency_limit_refuses_a_request_with_a_body_cleanly() -> None:
    release = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await respond(send)
        if scope["path"] == "/bg":
            await release.wait()  # background work after the response keeps the task alive

    with running_server(app, lifespan="off", limit_concurrency=2) as running:
        state = running.server.state
        assert state is not None
        loop = running.server.loop
        assert loop is not None
        try:
            with RawClient.connect(running.port) as client:
                assert client.request(b"GET", b"/bg").status == 200
                assert client.request(b"GET", b"/bg").status == 200
                wait_until(lambda: state.tasks == 2)
                client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
                assert client.response().status == 503
                client.assert_closed()
        finally:
            loop.call_soon_threadsafe(release.set)
        wait_until(lambda: state.tasks == 0)
        assert get(running.port).status == 200


def test_an_app_that_fails_before_it_is_a_coroutine_gets_a_500_and_leaves_no_task_behind() -> None:
    async def real(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await respond(send)

    class App:
        """An ASGI 3 object whose __call__ is a plain def that returns the coroutine."""

        def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
            if scope["type"] == "http" and scope["path"] == "/boom":
                raise ValueError("failed synchronously")
            return real(scope, receive, send)

    with running_server(App(), lifespan="off", interface="asgi3") as running:
        with RawClient.connect(running.port) as client:
            client.send(b"GET /boom HTTP/1.1\r\nHost: a\r\n\r\n")
            assert client.response().status == 500
            client.assert_closed()
        state = running.server.state
        assert state is not None
        assert state.tasks == 0
        assert get(running.port).status == 200


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_pathsend_cancelled_midway_does_not_touch_other_connections(tmp_path: Path, loop: str) -> None:
    data = os.urandom(32 * 1024 * 1024)
    big = tmp_path / "big.bin"
    big.write_bytes(data)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/big":
            headers = [(b"content-length", str(len(data)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            try:
                await asyncio.wait_for(send({"type": "http.response.pathsend", "path": str(big)}), 0.3)
            except asyncio.TimeoutError:
                return
        else:
            await respond(send, 200, b"x" * 100_000)

    with running_server(app, lifespan="off", loop=loop) as running:
        slow = RawClient.connect(running.port)
        slow.send(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")  # and then never read
        slow.read_until(b"\r\n\r\n")
        threading.Event().wait(0.5)  # the client reads nothing while the app gives up
        rest = slow.read_to_close()
        assert len(rest) < len(data)  # the response was cut short, and the connection closed
        for _ in range(20):  # new connections reuse descriptor numbers; none gets file bytes
            response = get(running.port)
            assert response.status == 200
            assert response.body == b"x" * 100_000
        slow.close()


def test_a_refusal_lingers_for_the_rest_of_the_request() -> None:
    """Lingering close (RFC 9112 §9.6): after refusing a request, the server half-closes and
    keeps reading for a moment, so the body the client is still sending is not answered with
    a reset (which can destroy the refusal before the client reads it)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await respond(send)

    chunk = b"x" * 65536
    with running_server(app, lifespan="off") as running, RawClient.connect(running.port) as client:
        client.send(b"POST / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\nContent-Length: 524288\r\n\r\n")
        assert client.response().status == 400
        assert client.read_to_close() == b""  # our side is done: the server sent its FIN
        for _ in range(8):  # a closed socket would answer these with a reset
            client.sock.sendall(chunk)
        assert get(running.port).status == 200


def test_an_early_answer_lingers_for_the_unread_body() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await respond(send, 413, b"too big for this endpoint")  # answers without reading

    chunk = b"y" * 65536
    with running_server(app, lifespan="off") as running, RawClient.connect(running.port) as client:
        client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 524288\r\n\r\n")
        response = client.response()
        assert response.status == 413
        assert response.body == b"too big for this endpoint"
        assert client.read_to_close() == b""
        for _ in range(8):
            client.sock.sendall(chunk)


def test_a_body_that_stops_arriving_is_408_and_the_app_hears_disconnect() -> None:
    heard: list[str] = []
    got_disconnect = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/ok":
            await respond(send)
            return
        while True:
            message = await receive()
            heard.append(message["type"])
            if message["type"] == "http.disconnect":
                got_disconnect.set()
                return
            if not message.get("more_body"):
                await respond(send)
                return

    with running_server(app, lifespan="off", timeout_body_read=1) as running:
        with RawClient.connect(running.port) as client:
            client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nfirst ten!")
            start = time.monotonic()
            response = client.response()  # and then the client sends nothing more
            assert response.status == 408
            assert time.monotonic() - start >= 0.9
            client.assert_closed()
        assert got_disconnect.wait(5)
        assert heard == ["http.request", "http.disconnect"]
        # A body that keeps coming, however slowly, is not cut off.
        with RawClient.connect(running.port) as client:
            client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n")
            for byte in (b"a", b"b", b"c", b"d"):
                assert client.silent_for(0.6)
                client.send(byte)
            assert client.response().status == 200
        assert get(running.port, b"/ok").status == 200


def test_a_wsgi_app_waiting_for_a_body_that_stops_is_freed() -> None:
    finished = threading.Event()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        try:
            body = environ["wsgi.input"].read()
        finally:
            finished.set()  # the pool thread is not held forever
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    with running_server(app, lifespan="off", interface="wsgi", timeout_body_read=1) as running:
        with RawClient.connect(running.port) as client:
            client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\npartial")
            assert client.response().status == 408
            client.assert_closed()
        assert finished.wait(5)
        with RawClient.connect(running.port) as client:
            assert client.request(b"POST", b"/", b"whole").body == b"whole"
