"""The ASGI 3.0 interface over real sockets: scope, receive, send, pathsend, lifespan, app errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from steadyloop.importing import detect_interface
from tests.apps.basic import Asgi2App, echo, respond, with_state
from tests.conftest import RunningServer, running_server, wait_until
from tests.rawhttp import RawClient, get


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server(echo) as running:
        yield running


# -- scope ----------------------------------------------------------------------------------------


def test_complete_http_scope(server: RunningServer) -> None:
    with RawClient.connect(server.port) as client:
        local_port = client.sock.getsockname()[1]
        client.send(
            b"POST /caf%C3%A9/a%20b/%2F?q=1&r=%20 HTTP/1.1\r\nHost: example.org\r\n"
            b"X-Mixed-CASE: Keep Value Case\r\nContent-Length: 2\r\n\r\nhi"
        )
        seen = json.loads(client.response().body)
    assert seen["type"] == "http"
    assert seen["asgi"] == {"version": "3.0", "spec_version": seen["asgi"]["spec_version"]}
    assert seen["asgi"]["spec_version"] in ("2.3", "2.4", "2.5")
    assert seen["http_version"] == "1.1"
    assert seen["method"] == "POST"
    assert seen["scheme"] == "http"
    assert seen["path"] == "/café/a b//"
    assert seen["raw_path"] == "/caf%C3%A9/a%20b/%2F"
    assert seen["query_string"] == "q=1&r=%20"
    assert seen["root_path"] == ""
    assert ["x-mixed-case", "Keep Value Case"] in seen["headers"]
    assert ["host", "example.org"] in seen["headers"]
    assert seen["header_types"] == ["bytes"]
    assert seen["client"] == ["127.0.0.1", local_port]
    assert seen["server"] == ["127.0.0.1", server.port]
    assert "http.response.pathsend" in seen["extensions"]
    assert seen["body"] == "hi"


def test_scope_types_are_the_specs() -> None:
    scopes: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scopes.append(scope)
            await respond(send, 200, b"")

    with running_server(app) as running:
        get(running.port, b"/x?y")
    scope = scopes[0]
    assert isinstance(scope["raw_path"], bytes) and isinstance(scope["query_string"], bytes)
    assert isinstance(scope["path"], str) and isinstance(scope["headers"], list)
    assert all(isinstance(n, bytes) and isinstance(v, bytes) for n, v in scope["headers"])
    assert isinstance(scope["client"], tuple) and isinstance(scope["server"], tuple)
    assert isinstance(scope["state"], dict)


def test_absolute_form_target(server: RunningServer) -> None:
    with RawClient.connect(server.port) as client:
        client.send(b"GET http://example.org/abs/path?k=v HTTP/1.1\r\nHost: example.org\r\n\r\n")
        seen = json.loads(client.response().body)
    assert seen["path"] == "/abs/path" and seen["query_string"] == "k=v"


# -- receive --------------------------------------------------------------------------------------


def test_receive_streams_the_body_as_it_arrives() -> None:
    messages: list[tuple[int, bool]] = []
    got_first = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while True:
            message = await receive()
            assert message["type"] == "http.request"
            messages.append((len(message["body"]), message["more_body"]))
            got_first.set()
            if not message["more_body"]:
                break
        await respond(send, 200, json.dumps(messages).encode())

    with running_server(app) as running, RawClient.connect(running.port) as client:
        client.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        assert got_first.wait(5)  # the app has the first piece before the rest is even sent
        client.send(b"6\r\nsecond\r\n0\r\n\r\n")
        assert client.response().status == 200
    assert messages[0] == (5, True)
    assert messages[-1][1] is False
    assert sum(n for n, _ in messages) == 11


def test_receive_after_the_body_waits_for_disconnect() -> None:
    events: list[str] = []
    done = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/ok":
            await respond(send, 200, b"ok")
            return
        first = await receive()
        events.append(first["type"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"stream", "more_body": True})
        events.append((await receive())["type"])  # blocks until the client leaves
        done.set()

    with running_server(app) as running:
        client = RawClient.connect(running.port)
        client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        client.read_until(b"stream\r\n")
        assert not done.is_set()
        client.close()
        assert done.wait(5)
        assert events == ["http.request", "http.disconnect"]
        assert get(running.port, b"/ok").status == 200


def test_disconnect_while_waiting_for_the_body() -> None:
    seen = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                seen.set()
                return
            if scope["path"] == "/ok" and not message["more_body"]:
                await respond(send, 200, b"ok")
                return

    with running_server(app) as running:
        client = RawClient.connect(running.port)
        client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\npartial")
        assert client.silent_for(0.1)
        client.close()
        assert seen.wait(5)
        with RawClient.connect(running.port) as other:
            assert other.request(b"POST", b"/ok", b"x").status == 200


def test_disconnect_while_streaming_a_response_stops_send(caplog: pytest.LogCaptureFixture) -> None:
    outcome: list[str] = []
    done = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/ok":
            await respond(send, 200, b"ok")
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            for _ in range(100000):
                await send({"type": "http.response.body", "body": b"x" * 4096, "more_body": True})
                await asyncio.sleep(0.001)
            outcome.append("finished")
        except OSError:
            outcome.append("send raised OSError")
            raise
        finally:
            done.set()

    caplog.set_level(logging.ERROR, logger="steadyloop.error")
    with running_server(app) as running:
        client = RawClient.connect(running.port)
        client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        client.read_until(b"\r\n\r\n")
        client.read_exact(10000)
        client.close()
        assert done.wait(10)
        assert outcome == ["send raised OSError"]
        assert get(running.port, b"/ok").body == b"ok"
    # The client leaving is not the app's fault: no traceback for it.
    assert not [r for r in caplog.records if r.exc_info]


# -- send: http.response.pathsend -----------------------------------------------------------------


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("files") / "data.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    return path


def test_pathsend(big_file: Path, loop_name: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        assert "http.response.pathsend" in scope["extensions"]
        headers = [(b"content-type", b"application/octet-stream")]
        if scope["path"] == "/with-length":
            headers.append((b"content-length", str(big_file.stat().st_size).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": str(big_file)})

    expected = big_file.read_bytes()
    with running_server(app, loop=loop_name) as running, RawClient.connect(running.port) as client:
        for path in (b"/", b"/with-length", b"/"):
            response = client.request(b"GET", path)
            assert response.status == 200
            assert response.header(b"content-length") == str(len(expected)).encode()
            assert response.body == expected
        head = client.request(b"HEAD", b"/with-length")
        assert head.header(b"content-length") == str(len(expected)).encode()
        assert client.request(b"GET", b"/").body == expected  # nothing leaked after the HEAD
        client.send(b"GET / HTTP/1.0\r\n\r\n")
        assert client.response().body == expected


def test_pathsend_to_a_slow_reader(big_file: Path) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": str(big_file)})

    expected = big_file.read_bytes()
    with running_server(app) as running, RawClient.connect(running.port) as client:
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert client.silent_for(0.3) is False  # the head and some body arrive...
        response = client.response()  # ...and the rest as we read
        assert response.body == expected


# -- lifespan -------------------------------------------------------------------------------------


def test_lifespan_state_reaches_requests() -> None:
    with running_server(with_state, lifespan="on") as running:
        assert get(running.port).body == b"hello from lifespan"


def test_lifespan_startup_and_shutdown_run_in_order() -> None:
    calls: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                calls.append(message["type"])
                if message["type"] == "lifespan.startup":
                    scope["state"]["n"] = 41
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        else:
            scope["state"]["n"] += 1  # each request gets its own shallow copy
            await respond(send, 200, b"%d" % scope["state"]["n"])

    with running_server(app) as running:
        assert calls == ["lifespan.startup"]
        assert get(running.port).body == b"42"
        assert get(running.port).body == b"42"
    assert calls == ["lifespan.startup", "lifespan.shutdown"]


def test_lifespan_auto_serves_an_app_without_lifespan() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError("only http here")
        await respond(send, 200, b"no lifespan")

    with running_server(app, lifespan="auto") as running:
        assert get(running.port).body == b"no lifespan"


def test_lifespan_off_never_calls_it() -> None:
    types: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        types.append(scope["type"])
        await respond(send, 200, b"")

    with running_server(app, lifespan="off") as running:
        get(running.port)
    assert types == ["http"]


def test_failed_startup_does_not_serve() -> None:
    """(The CLI test checks the exit code and the message on stderr.)"""
    from tests.apps.basic import failing_startup

    with running_server(failing_startup, lifespan="on") as running:
        running.thread.join(5)
        assert not running.thread.is_alive()
        assert not running.server.started.is_set()
        assert running.server.exit_code != 0


# -- ASGI 2 ---------------------------------------------------------------------------------------


def test_asgi2_app_is_detected_and_wrapped() -> None:
    assert detect_interface(Asgi2App) == "asgi2"
    assert detect_interface(echo) == "asgi3"
    with running_server(Asgi2App) as running:
        assert get(running.port, b"/two").body == b"asgi2 /two"


def test_asgi3_callable_object_is_detected() -> None:
    class App:
        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                await respond(send, 200, b"object")

    assert detect_interface(App()) == "asgi3"
    with running_server(App()) as running:
        assert get(running.port).body == b"object"


# -- app errors -----------------------------------------------------------------------------------


async def faulty(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/raise-before":
        raise ValueError("boom before start")
    if path == "/raise-after":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError("boom after start")
    if path == "/return-early":
        return
    if path == "/return-mid-stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        return
    if path == "/body-before-start":
        await send({"type": "http.response.body", "body": b"x"})
        return
    if path == "/start-twice":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        return
    if path == "/body-after-end":
        await respond(send, 200, b"done")
        await send({"type": "http.response.body", "body": b"again"})
        return
    if path == "/unknown-message":
        await send({"type": "http.response.bogus"})
        return
    if path == "/too-long":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"three"})
        return
    await respond(send, 200, b"fine")


@pytest.fixture(scope="module")
def faulty_server() -> Iterator[RunningServer]:
    with running_server(faulty) as running:
        yield running


def error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "steadyloop.error" and r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    "path", ["/raise-before", "/return-early", "/body-before-start", "/unknown-message", "/too-long"]
)
def test_app_error_before_the_response_is_500(
    faulty_server: RunningServer, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    caplog.set_level(logging.ERROR, logger="steadyloop.error")
    with RawClient.connect(faulty_server.port) as client:
        response = client.request(b"GET", path.encode())
        assert response.status == 500
        client.assert_closed()
    wait_until(lambda: error_records(caplog))
    records = error_records(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]
    if path == "/raise-before":
        assert records[0].exc_info is not None and "boom before start" in str(records[0].exc_info[1])
    assert get(faulty_server.port).body == b"fine"


@pytest.mark.parametrize("path", ["/raise-after", "/return-mid-stream", "/start-twice"])
def test_app_error_after_the_response_started_aborts(
    faulty_server: RunningServer, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    caplog.set_level(logging.ERROR, logger="steadyloop.error")
    with RawClient.connect(faulty_server.port) as client:
        client.send(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: a\r\n\r\n")
        data = client.read_to_close()
    if path == "/start-twice":
        # the first start was never followed by a body: nothing was written; a 500 is honest
        assert data.startswith(b"HTTP/1.1 500") or data == b""
    else:
        assert data.startswith(b"HTTP/1.1 200")
        assert not data.endswith(b"0\r\n\r\n")  # never looks like a complete chunked body
    wait_until(lambda: error_records(caplog))
    assert len(error_records(caplog)) == 1, [r.getMessage() for r in error_records(caplog)]
    assert get(faulty_server.port).body == b"fine"


def test_message_after_the_response_is_an_error_logged_once(
    faulty_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="steadyloop.error")
    with RawClient.connect(faulty_server.port) as client:
        response = client.request(b"GET", b"/body-after-end")
        assert response.body == b"done"  # the response went out whole
    wait_until(lambda: error_records(caplog))
    assert len(error_records(caplog)) == 1
    assert "after the response was complete" in str(error_records(caplog)[0].exc_info)
    assert get(faulty_server.port).body == b"fine"


def test_no_app_error_kills_the_server(faulty_server: RunningServer) -> None:
    paths = ["/raise-before", "/raise-after", "/return-early", "/start-twice", "/unknown-message"] * 4
    with httpx.Client(base_url=faulty_server.url) as client:
        for path in paths:
            with contextlib.suppress(httpx.HTTPError):
                client.get(path)
        assert client.get("/").text == "fine"
    assert faulty_server.thread.is_alive()
