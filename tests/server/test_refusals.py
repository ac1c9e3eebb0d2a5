"""Every rejected request class over a real socket: status, closed connection, worker still serving.

One test per class (parametrized over the same table the pure parser tests use), plus
limits, and headers from the app that would split the response.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tests.apps.basic import echo, respond
from tests.conftest import RunningServer, running_server
from tests.http.test_parser import REFUSED
from tests.rawhttp import RawClient, get


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server(echo, limit_request_line=1024, limit_request_fields=30) as running:
        yield running


def assert_refused(port: int, data: bytes, status: int) -> None:
    with RawClient.connect(port) as client:
        # the server may close before it has read all of a big request
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            client.send(data)
        response = client.response()
        assert response.status == status, (response.status, response.body)
        assert response.header(b"connection") == b"close"
        client.assert_closed()
    # ...and the worker still serves a fresh connection.
    assert get(port, b"/after").status == 200


@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_request_class(server: RunningServer, name: str) -> None:
    data, status = REFUSED[name]
    assert_refused(server.port, data, status)


def test_refused_after_a_good_pipelined_request(server: RunningServer) -> None:
    """The good request is answered, then the bad one is refused and the connection closed."""
    good = b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n"
    bad = b"GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n"
    with RawClient.connect(server.port) as client:
        client.send(good + bad)
        first = client.response()
        assert first.status == 200 and json.loads(first.body)["path"] == "/first"
        assert client.response().status == 400
        client.assert_closed()


def test_414_long_target(server: RunningServer) -> None:
    assert_refused(server.port, b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414)


def test_431_too_many_headers(server: RunningServer) -> None:
    headers = b"".join(b"X-%d: 1\r\n" % i for i in range(40))
    assert_refused(server.port, b"GET / HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n", 431)


def test_431_header_field_too_large(server: RunningServer) -> None:
    assert_refused(server.port, b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431)


def test_431_head_too_large(server: RunningServer) -> None:
    headers = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 4000) for i in range(25))
    assert_refused(server.port, b"GET / HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n", 431)


def test_505_version(server: RunningServer) -> None:
    assert_refused(server.port, b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505)


def test_501_unknown_method(server: RunningServer) -> None:
    assert_refused(server.port, b"BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n", 501)


def test_417_expectation(server: RunningServer) -> None:
    assert_refused(server.port, b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", 417)


def test_invalid_request_target_form(server: RunningServer) -> None:
    assert_refused(server.port, b"GET example.com HTTP/1.1\r\nHost: a\r\n\r\n", 400)


def test_path_not_utf8(server: RunningServer) -> None:
    assert_refused(server.port, b"GET /%ff%fe HTTP/1.1\r\nHost: a\r\n\r\n", 400)


def test_bad_chunk_while_app_reads_the_body(server: RunningServer) -> None:
    """The app has started; a broken chunk still gets a 400 and a close, and nothing else."""
    with RawClient.connect(server.port) as client:
        client.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        assert client.silent_for(0.2)  # the app is waiting for more body
        client.send(b"zz\r\nxx\r\n0\r\n\r\n")
        response = client.response()
        assert response.status == 400
        client.assert_closed()
    assert get(server.port).status == 200


def test_bad_chunk_after_the_response_started_aborts() -> None:
    """Once the response head is out, a 400 cannot be sent: the connection is cut instead."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/ok":
            await respond(send, 200, b"fine")
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass

    with running_server(app) as running, RawClient.connect(running.port) as client:
        client.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        head = client.read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert client.read_until(b"partial\r\n").endswith(b"7\r\npartial\r\n")
        client.send(b"zz\r\n")
        data = client.read_to_close() if not client.closed_within(5) else b""
        assert b"HTTP/1.1 400" not in data
        assert get(running.port, b"/ok").body == b"fine"


# -- headers from the app that would split the response ---------------------------------------

BAD_APP_HEADERS = {
    "CR LF in value": [(b"x-a", b"ok\r\nx-injected: yes")],
    "LF in value": [(b"x-a", b"ok\nx-injected: yes")],
    "CR in value": [(b"x-a", b"ok\rx-injected: yes")],
    "NUL in value": [(b"x-a", b"ok\x00x-injected")],
    "CR LF in name": [(b"x-a\r\nx-injected", b"yes")],
    "NUL in name": [(b"x-\x00injected", b"yes")],
    "space in name": [(b"x injected", b"yes")],
}


@pytest.mark.parametrize("name", list(BAD_APP_HEADERS))
@pytest.mark.parametrize("streaming", [False, True])
def test_app_header_with_cr_lf_nul_is_500_and_never_written(
    name: str, streaming: bool, caplog: pytest.LogCaptureFixture
) -> None:
    headers = BAD_APP_HEADERS[name]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/ok":
            await respond(send, 200, b"fine")
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"body", "more_body": streaming})
        if streaming:
            await send({"type": "http.response.body", "body": b""})

    caplog.set_level(logging.ERROR, logger="steadyloop.error")
    with running_server(app) as running:
        with RawClient.connect(running.port) as client:
            client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            raw = client.read_to_close()
        assert raw.startswith(b"HTTP/1.1 500 "), raw
        assert b"injected" not in raw and b"body" not in raw
        assert get(running.port, b"/ok").body == b"fine"
    assert any("CR, LF or NUL" in r.getMessage() or "header" in str(r.exc_info) for r in caplog.records)
