"""Malformed HTTP/2 requests (RFC 9113 §8.1.1, §8.2, §8.3), sent as hand-built frames.

Field syntax and pseudo-header faults end the connection: GOAWAY PROTOCOL_ERROR
and close (what the h2 engine's inbound validation did, now steadyloop's own
checks). A well-formed request the server does not serve (CONNECT, a :path that
is not origin-form) resets only its stream with PROTOCOL_ERROR. After either the
worker serves the next client.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import hpack
import httpx
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import DataFrame, Frame, HeadersFrame, RstStreamFrame, WindowUpdateFrame

from tests.apps.basic import echo
from tests.conftest import RunningServer, running_server
from tests.h2frames import REQUEST, RawH2, goaway

Fields = list[tuple[bytes, bytes]]


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server(echo) as running:
        yield running


@pytest.fixture(autouse=True)
def log_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "steadyloop.error")


def headers_frame(stream_id: int, fields: Fields, end_stream: bool = True) -> bytes:
    flags = ["END_HEADERS", "END_STREAM"] if end_stream else ["END_HEADERS"]
    # A fresh encoder each time: literals only, no dynamic table shared between frames.
    return HeadersFrame(stream_id, data=hpack.Encoder().encode(fields), flags=flags).serialize()


def assert_connection_error(client: RawH2, server: RunningServer) -> None:
    frames = client.frames()
    assert goaway(frames).error_code == ErrorCodes.PROTOCOL_ERROR
    assert not [f for f in frames if isinstance(f, HeadersFrame)], "a malformed request was served"
    assert client.next_frame(1.0) is None  # closed
    with httpx.Client(http1=False, http2=True) as fresh:
        assert fresh.get(f"http://127.0.0.1:{server.port}/").status_code == 200


def next_frame_on(client: RawH2, stream_id: int) -> Frame:
    while True:
        frame = client.next_frame(10.0)
        assert frame is not None, "connection closed"
        if frame.stream_id == stream_id:
            return frame


GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a")]

CONNECTION_ERRORS: dict[str, Fields] = {
    "uppercase name": [*GET, (b"User-Agent", b"x")],
    "space in name": [*GET, (b"x y", b"1")],
    "DEL in name": [*GET, (b"x\x7f", b"1")],
    "non-ASCII name": [*GET, (b"x\xc3\xa9", b"1")],
    "colon inside name": [*GET, (b"a:b", b"1")],
    "empty name": [*GET, (b"", b"1")],
    "CR in value": [*GET, (b"x", b"a\rb")],
    "LF in value": [*GET, (b"x", b"a\nb")],
    "NUL in value": [*GET, (b"x", b"a\0b")],
    "leading space in value": [*GET, (b"x", b" a")],
    "trailing tab in value": [*GET, (b"x", b"a\t")],
    "CR in a pseudo-header": [
        (b":method", b"GET"),
        (b":scheme", b"http"),
        (b":path", b"/a\r"),
        (b":authority", b"a"),
    ],
    "te other than trailers": [*GET, (b"te", b"gzip")],
    "connection": [*GET, (b"connection", b"close")],
    "keep-alive": [*GET, (b"keep-alive", b"timeout=5")],
    "proxy-connection": [*GET, (b"proxy-connection", b"close")],
    "transfer-encoding": [*GET, (b"transfer-encoding", b"chunked")],
    "upgrade": [*GET, (b"upgrade", b"websocket")],
    "pseudo after regular": [*GET[:3], (b"x", b"1"), (b":authority", b"a")],
    "duplicate :path": [*GET, (b":path", b"/b")],
    "duplicate :method": [(b":method", b"GET"), *GET],
    "unknown pseudo": [*GET, (b":foo", b"bar")],
    ":status in a request": [*GET, (b":status", b"200")],
    ":protocol without CONNECT": [*GET, (b":protocol", b"websocket")],
    "no :method": GET[1:],
    "no :scheme": [GET[0], *GET[2:]],
    "no :path": [*GET[:2], GET[3]],
    "empty :path": [*GET[:2], (b":path", b""), GET[3]],
    "CONNECT with :path": [(b":method", b"CONNECT"), (b":path", b"/"), (b":authority", b"a:443")],
    "no :authority and no host": GET[:3],
    ":authority and host differ": [*GET, (b"host", b"b")],
    "two host fields": [*GET[:3], (b"host", b"a"), (b"host", b"a")],
    "content-length not digits": [(b":method", b"POST"), *GET[1:], (b"content-length", b"1x")],
    "content-length twice, differing": [
        (b":method", b"POST"),
        *GET[1:],
        (b"content-length", b"1"),
        (b"content-length", b"2"),
    ],
}


@pytest.mark.parametrize("fields", CONNECTION_ERRORS.values(), ids=CONNECTION_ERRORS.keys())
def test_malformed_header_blocks_end_the_connection(server: RunningServer, fields: Fields) -> None:
    with RawH2(server.port) as client:
        client.send_raw(headers_frame(1, fields))
        assert_connection_error(client, server)


def test_a_body_longer_than_its_content_length_ends_the_connection(server: RunningServer) -> None:
    with RawH2(server.port) as client:
        post = [(b":method", b"POST"), *GET[1:], (b"content-length", b"2")]
        client.send_raw(headers_frame(1, post, end_stream=False))
        client.send_raw(DataFrame(1, data=b"abc", flags=["END_STREAM"]).serialize())
        assert_connection_error(client, server)


TRAILER_ERRORS: dict[str, Fields] = {
    "pseudo-header in trailers": [(b":path", b"/")],
    "uppercase trailer name": [(b"X-Sum", b"1")],
    "CR in trailer value": [(b"x-sum", b"1\r")],
    "connection field in trailers": [(b"connection", b"close")],
}


@pytest.mark.parametrize("trailers", TRAILER_ERRORS.values(), ids=TRAILER_ERRORS.keys())
def test_malformed_trailers_end_the_connection(server: RunningServer, trailers: Fields) -> None:
    with RawH2(server.port) as client:
        client.send_raw(headers_frame(1, [(b":method", b"POST"), *GET[1:]], end_stream=False))
        client.send_raw(DataFrame(1, data=b"abc").serialize())
        client.send_raw(headers_frame(1, trailers))
        frames = client.frames()
        assert goaway(frames).error_code == ErrorCodes.PROTOCOL_ERROR


def test_well_formed_trailers_are_accepted(server: RunningServer) -> None:
    with RawH2(server.port) as client:
        client.send_raw(headers_frame(1, [(b":method", b"POST"), *GET[1:]], end_stream=False))
        client.send_raw(DataFrame(1, data=b"abc").serialize())
        client.send_raw(headers_frame(1, [(b"x-sum", b"1"), (b"te", b"trailers")]))
        frame = next_frame_on(client, 1)
        # The echo app reads the body, which may reopen the stream's window first.
        while isinstance(frame, WindowUpdateFrame):
            frame = next_frame_on(client, 1)
        assert isinstance(frame, HeadersFrame), frame


STREAM_ERRORS: dict[str, Fields] = {
    "CONNECT": [(b":method", b"CONNECT"), (b":authority", b"a:443")],
    ":path not origin-form": [*GET[:2], (b":path", b"abc"), GET[3]],
}


@pytest.mark.parametrize("fields", STREAM_ERRORS.values(), ids=STREAM_ERRORS.keys())
def test_requests_the_server_refuses_reset_their_stream_only(
    server: RunningServer, fields: Fields, caplog: pytest.LogCaptureFixture
) -> None:
    with RawH2(server.port) as client:
        client.send_raw(headers_frame(1, fields))
        frame = next_frame_on(client, 1)
        assert isinstance(frame, RstStreamFrame)
        assert frame.error_code == ErrorCodes.PROTOCOL_ERROR
        # The connection lives on: the next request on it is served.
        client.send_raw(headers_frame(3, REQUEST))
        assert isinstance(next_frame_on(client, 3), HeadersFrame)
    assert "refused an HTTP/2 request" in caplog.text


def test_split_cookies_and_a_matching_host_are_accepted(server: RunningServer) -> None:
    with RawH2(server.port) as client:
        fields = [*GET, (b"host", b"a"), (b"cookie", b"a=1"), (b"te", b"Trailers"), (b"cookie", b"b=2")]
        client.send_raw(headers_frame(1, fields))
        frame = next_frame_on(client, 1)
        assert isinstance(frame, HeadersFrame)
