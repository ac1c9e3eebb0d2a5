"""Trailers, chunk extensions and bad methods over a real socket: the answer, a closed
connection, and a worker that keeps serving; and no trailer reaching another request."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.apps.basic import echo
from tests.conftest import RunningServer, running_server
from tests.rawhttp import RawClient
from tests.server.test_refusals import assert_refused

CHUNKED = b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.fixture(scope="module", params=["uvloop", "asyncio"])
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with running_server(echo, loop=request.param) as running:
        yield running


def test_trailers_stay_with_their_request_on_a_keep_alive_connection(server: RunningServer) -> None:
    with RawClient.connect(server.port) as client:
        client.send(CHUNKED + b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\nX-Injected: yes\r\n\r\n")
        first = json.loads(client.response().body)
        client.send(b"GET /next HTTP/1.1\r\nHost: b\r\n\r\n")
        second = json.loads(client.response().body)
    assert ["x-trailer", "1"] not in first["headers"]  # dropped, not delivered
    assert second["headers"] == [["host", "b"]]


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (CHUNKED + b"0\r\nHost: evil\r\n\r\n", 400),
        (CHUNKED + b"0\r\nContent-Length: 5\r\n\r\n", 400),
        (CHUNKED + b"0\r\nX-Big: " + b"v" * 9000 + b"\r\n\r\n", 431),
        (CHUNKED + b"1;" + b"e" * 20000, 400),
        (CHUNKED + b"0\r\nX-Endless: " + b"v" * 20000, 431),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
        (b"GE / HTTP/1.1\r\nHost: a\r\n\r\n", 501),
        (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    ],
    ids=[
        "host-trailer",
        "content-length-trailer",
        "trailer-too-large",
        "endless-chunk-extension",
        "endless-trailer",
        "gzip-then-chunked",
        "unknown-token-method",
        "non-token-method",
        "http2-preface",
    ],
)
def test_refused(server: RunningServer, data: bytes, status: int) -> None:
    assert_refused(server.port, data, status)
