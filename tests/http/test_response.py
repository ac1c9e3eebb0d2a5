"""Response heads: framing, refusal of CR/LF/NUL from the app, Connection handling. No I/O."""

from __future__ import annotations

import re
from typing import Any

import pytest

from steadyloop.http.errors import ResponseError
from steadyloop.http.response import DateCache, build_head, simple_response, status_line
from steadyloop.http.writers import FRAMING_CHUNKED, FRAMING_CLOSE, FRAMING_LENGTH, FRAMING_NONE


def build(
    status: int = 200,
    headers: Any = (),
    *,
    extra: bytes = b"",
    body_allowed: bool = True,
    body_length: int = -1,
    http_10: bool = False,
    keep_alive: bool = True,
) -> tuple[bytes, int, int, bool]:
    return build_head(
        status,
        headers,
        extra=extra,
        body_allowed=body_allowed,
        body_length=body_length,
        http_10=http_10,
        keep_alive=keep_alive,
    )


def header_lines(head: bytes) -> list[bytes]:
    assert head.endswith(b"\r\n\r\n")
    return head[:-4].split(b"\r\n")[1:]


def test_status_lines() -> None:
    assert status_line(200) == b"HTTP/1.1 200 OK\r\n"
    assert status_line(404) == b"HTTP/1.1 404 Not Found\r\n"
    assert status_line(599) == b"HTTP/1.1 599 \r\n"  # unknown code: empty reason phrase
    for bad in (99, 1000, -1):
        with pytest.raises(ResponseError):
            status_line(bad)


def test_whole_body_gets_content_length() -> None:
    head, framing, length, keep = build(headers=[(b"x-a", b"1")], body_length=5)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert header_lines(head) == [b"x-a: 1", b"content-length: 5"]
    assert (framing, length, keep) == (FRAMING_LENGTH, 5, True)


def test_app_content_length_is_kept_and_not_doubled() -> None:
    head, framing, length, _ = build(headers=[(b"Content-Length", b"12")], body_length=-1)
    assert header_lines(head) == [b"Content-Length: 12"]
    assert (framing, length) == (FRAMING_LENGTH, 12)


def test_streaming_body_is_chunked_on_http_11() -> None:
    head, framing, length, keep = build(body_length=-1)
    assert header_lines(head) == [b"transfer-encoding: chunked"]
    assert (framing, length, keep) == (FRAMING_CHUNKED, -1, True)


def test_streaming_body_on_http_10_ends_with_close() -> None:
    head, framing, _, keep = build(body_length=-1, http_10=True, keep_alive=True)
    assert framing == FRAMING_CLOSE and keep is False
    assert b"connection: close" in header_lines(head)
    assert not any(line.lower().startswith(b"transfer-encoding") for line in header_lines(head))


def test_http_10_keep_alive_is_announced() -> None:
    head, _, _, keep = build(body_length=3, http_10=True, keep_alive=True)
    assert keep is True
    assert b"connection: keep-alive" in header_lines(head)


def test_app_transfer_encoding_is_dropped() -> None:
    head, framing, _, _ = build(headers=[(b"transfer-encoding", b"gzip")], body_length=4)
    assert b"gzip" not in head
    assert framing == FRAMING_LENGTH


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(status: int) -> None:
    head, framing, _, keep = build(status, body_allowed=False, body_length=-1)
    assert framing == FRAMING_NONE and keep is True
    assert header_lines(head) == []


def test_head_request_keeps_the_apps_content_length() -> None:
    head, framing, _, _ = build(headers=[(b"content-length", b"100")], body_allowed=False)
    assert framing == FRAMING_NONE
    assert header_lines(head) == [b"content-length: 100"]


def test_connection_close_from_the_app_turns_keep_alive_off_once() -> None:
    head, _, _, keep = build(headers=[(b"Connection", b"close")], body_length=0)
    assert keep is False
    assert [line.lower() for line in header_lines(head)].count(b"connection: close") == 1


def test_server_closing_adds_connection_close() -> None:
    head, _, _, keep = build(body_length=0, keep_alive=False)
    assert keep is False and b"connection: close" in header_lines(head)


def test_extra_block_is_appended() -> None:
    head, _, _, _ = build(body_length=0, extra=b"server: steadyloop\r\n")
    assert header_lines(head)[-1] == b"server: steadyloop"


@pytest.mark.parametrize(
    "headers",
    [
        [(b"x-a", b"1\r\nx-injected: 1")],
        [(b"x-a", b"1\rx")],
        [(b"x-a", b"1\nx")],
        [(b"x-a", b"1\x00x")],
        [(b"x-a\r\nx-b", b"1")],
        [(b"x-a\n", b"1")],
        [(b"x\x00a", b"1")],
        [(b"x a", b"1")],
        [(b"", b"1")],
        [(b"x:a", b"1")],
        [("x-str-name", b"1")],
        [(b"x-a", "str value")],
        [(b"content-length", b"12x")],
        [(b"content-length", b"-1")],
    ],
)
def test_refused_headers(headers: Any) -> None:
    for _ in range(2):  # a refused line is never remembered as a good one
        with pytest.raises(ResponseError):
            build(headers=headers, body_length=0)
    with pytest.raises(ResponseError):  # nor does a good line before it make it pass
        build(headers=[(b"x-good", b"1"), *headers], body_length=0)


def test_the_same_headers_again_give_the_same_head() -> None:
    headers = [(b"content-type", b"text/plain"), (b"Content-Length", b"5"), (b"Connection", b"close")]
    first = build(headers=headers, body_length=5)
    assert first == build(headers=headers, body_length=5)
    # Equal pairs, new objects, and pairs given as lists (not hashable): the same head.
    again = [(bytes(name), bytes(value)) for name, value in headers]
    assert first == build(headers=again, body_length=5)
    assert first == build(headers=[[name, value] for name, value in headers], body_length=5)
    head, framing, length, keep = first
    assert header_lines(head) == [b"content-type: text/plain", b"Content-Length: 5", b"Connection: close"]
    assert (framing, length, keep) == (FRAMING_LENGTH, 5, False)


def test_known_content_lengths_still_conflict() -> None:
    build(headers=[(b"content-length", b"5")], body_length=5)
    build(headers=[(b"content-length", b"6")], body_length=6)
    with pytest.raises(ResponseError):
        build(headers=[(b"content-length", b"5"), (b"content-length", b"6")], body_length=-1)
    head, _, length, _ = build(headers=[(b"content-length", b"5"), (b"content-length", b"5")])
    assert length == 5 and header_lines(head) == [b"content-length: 5", b"content-length: 5"]


def test_unhashable_header_values_are_refused_not_crashed_on() -> None:
    with pytest.raises(ResponseError):
        build(headers=[(b"x-a", bytearray(b"1"))], body_length=0)


def test_simple_response() -> None:
    raw = simple_response(400, b"bad\n")
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert body == b"bad\n"
    assert b"content-length: 4" in head and b"connection: close" in head
    assert simple_response(503).endswith(b"\r\n\r\nService Unavailable\n")


def test_date_cache_format() -> None:
    cache = DateCache()
    value = cache.refresh()
    assert re.fullmatch(rb"date: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\r\n", value)


def test_simple_response_carries_the_servers_header_block() -> None:
    extra = b"date: Tue, 01 Dec 2026 08:00:00 GMT\r\nserver: steadyloop\r\n"
    raw = simple_response(431, b"too big\n", extra=extra)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.endswith(b"connection: close\r\n" + extra.rstrip(b"\r\n"))
    assert body == b"too big\n"
