"""RequestParser against hostile framing: trailers, chunk extensions, bad methods split anyhow.

Each test feeds the same bytes whole, byte by byte and split at every point, because an
answer that depends on how the bytes arrive is itself a bug a peer can use.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from steadyloop.http.errors import ProtocolError
from steadyloop.http.parser import END_OF_MESSAGE, NEED_DATA, RequestHead, RequestParser

CHUNKED_HEAD = b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
NEXT = b"GET /next HTTP/1.1\r\nHost: b\r\n\r\n"


def feed_split(data: bytes, cuts: list[int], **limits: Any) -> list[Any]:
    """Events for `data` fed in pieces cut at `cuts`; a refusal ends the list as its status."""
    parser = RequestParser(**limits)
    out: list[Any] = []
    bounds = [0, *cuts, len(data)]
    for start, end in itertools.pairwise(bounds):
        parser.feed(data[start:end])
        while True:
            try:
                event = parser.next_event()
            except ProtocolError as exc:
                out.append(exc.status)
                return out
            if event is NEED_DATA:
                break
            out.append(event)
    return out


def summary(events: list[Any]) -> list[Any]:
    """Comparable events: heads as (method, target, headers), body pieces joined."""
    joined: list[Any] = []
    for event in events:
        if isinstance(event, RequestHead):
            joined.append((event.method, event.target, event.headers))
        elif isinstance(event, bytes) and joined and isinstance(joined[-1], bytes):
            joined[-1] += event
        else:
            joined.append(event)
    return joined


def every_split(data: bytes, **limits: Any) -> list[Any]:
    """The events, asserted equal whether fed whole, bytewise or cut in two anywhere."""
    whole = summary(feed_split(data, [], **limits))
    assert summary(feed_split(data, list(range(1, len(data))), **limits)) == whole
    for cut in range(1, len(data)):
        assert summary(feed_split(data, [cut], **limits)) == whole, cut
    return whole


# -- trailers ---------------------------------------------------------------------------------


def test_trailer_fields_never_become_the_next_requests_headers() -> None:
    data = CHUNKED_HEAD + b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\nX-Other: 2\r\n\r\n" + NEXT
    out = every_split(data)
    assert out == [
        ("POST", b"/up", [(b"host", b"a"), (b"transfer-encoding", b"chunked")]),
        b"abc",
        END_OF_MESSAGE,
        ("GET", b"/next", [(b"host", b"b")]),
        END_OF_MESSAGE,
    ]


def test_one_trailer_field_does_not_leak_either() -> None:
    out = every_split(CHUNKED_HEAD + b"0\r\nX-T: 1\r\n\r\n" + NEXT)
    assert out[-2] == ("GET", b"/next", [(b"host", b"b")])


@pytest.mark.parametrize(
    "field",
    [
        b"Host: evil",
        b"Content-Length: 5",
        b"Transfer-Encoding: chunked",
        b"Expect: 100-continue",
        b"Connection: close",
        b"Authorization: x",
        b"X-Forwarded-For: 1.2.3.4",
        b"Content-Type: a/b",
    ],
)
def test_forbidden_trailer_field_is_400(field: bytes) -> None:
    data = CHUNKED_HEAD + b"0\r\n" + field + b"\r\n\r\n" + NEXT
    assert every_split(data)[-1] == 400


def test_too_many_trailer_fields_is_431() -> None:
    trailers = b"".join(b"X-T%d: 1\r\n" % i for i in range(5))
    out = feed_split(CHUNKED_HEAD + b"0\r\n" + trailers + b"\r\n", [], max_header_count=4)
    assert out[-1] == 431


def test_trailer_field_too_large_is_431() -> None:
    data = CHUNKED_HEAD + b"0\r\nX-Big: " + b"a" * 200 + b"\r\n\r\n"
    assert feed_split(data, [], max_header_size=100)[-1] == 431
    assert feed_split(data, list(range(len(CHUNKED_HEAD), len(data), 7)), max_header_size=100)[-1] == 431


def test_trailer_section_too_large_is_431() -> None:
    trailers = b"".join(b"X-T%d: %s\r\n" % (i, b"v" * 50) for i in range(10))
    assert feed_split(CHUNKED_HEAD + b"0\r\n" + trailers + b"\r\n", [], max_head_size=300)[-1] == 431


def test_trailer_line_that_never_ends_is_431_without_growing() -> None:
    parser = RequestParser(max_head_size=1000)
    parser.feed(CHUNKED_HEAD + b"0\r\nX-Endless: ")
    for _ in range(100):
        parser.feed(b"x" * 100)
        if parser.dead:
            break
    assert parser.dead
    with pytest.raises(ProtocolError) as info:
        while parser.next_event() is not NEED_DATA:
            pass
    assert info.value.status == 431


# -- chunk extensions (CVE-2024-22019) -------------------------------------------------------------


def test_short_chunk_extensions_are_fine() -> None:
    out = every_split(CHUNKED_HEAD + b"3;name=value;x\r\nabc\r\n0;last\r\n\r\n")
    assert out[1:] == [b"abc", END_OF_MESSAGE]


def test_endless_chunk_extension_is_refused() -> None:
    parser = RequestParser(max_header_size=1000)
    parser.feed(CHUNKED_HEAD)
    parser.feed(b"5;ext=")
    for _ in range(100):
        parser.feed(b"y" * 100)
        if parser.dead:
            break
    assert parser.dead
    with pytest.raises(ProtocolError) as info:
        while parser.next_event() is not NEED_DATA:
            pass
    assert info.value.status == 400


def test_chunk_extensions_between_chunks_are_bounded_too() -> None:
    parser = RequestParser(max_header_size=1000)
    parser.feed(CHUNKED_HEAD + b"3\r\nabc\r\n")
    for _ in range(100):
        parser.feed(b";e" * 50)
        if parser.dead:
            break
    assert parser.dead


# -- the status of a bad method does not depend on segmentation ------------------------------------

GOOD = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
POSTED = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody"


@pytest.mark.parametrize(
    ("request_line", "status"),
    [
        (b"FROB / HTTP/1.1", 501),
        (b"GETX / HTTP/1.1", 501),
        (b"GE / HTTP/1.1", 501),
        (b"PRI / HTTP/1.1", 501),
        (b"get / HTTP/1.1", 501),
        (b"G(T / HTTP/1.1", 400),
        (b"GE\x01 / HTTP/1.1", 400),
        (b"\x16\x03\x01\x02\x00", 400),
        (b" GET / HTTP/1.1", 400),
        # RTSP names are tokens like any other unknown method: one rule for all of them.
        (b"DESCRIBE / HTTP/1.1", 501),
        (b"ANNOUNCE / HTTP/1.1", 501),
    ],
)
@pytest.mark.parametrize("before", [b"", GOOD, POSTED, GOOD + b"\r\n"], ids=["alone", "get", "post", "crlf"])
def test_bad_method_status_is_the_same_however_split(request_line: bytes, status: int, before: bytes) -> None:
    out = every_split(before + request_line + b"\r\nHost: a\r\n\r\n")
    assert out[-1] == status


def test_whitespace_around_a_field_value_is_not_part_of_it() -> None:
    out = every_split(b"GET / HTTP/1.1\r\nHost: a \r\nX-A: \t b c \t \r\n\r\n")
    assert out[0] == ("GET", b"/", [(b"host", b"a"), (b"x-a", b"b c")])


@pytest.mark.parametrize(
    ("codings", "status"),
    [(b"gzip, chunked", 501), (b"gzip\r\nTransfer-Encoding: chunked", 501), (b"chunked, gzip", 400)],
)
def test_transfer_coding_we_would_not_decode_is_refused(codings: bytes, status: int) -> None:
    data = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " + codings + b"\r\n\r\n0\r\n\r\n"
    assert every_split(data)[-1] == status


def test_http2_prior_knowledge_preface_is_505() -> None:
    assert every_split(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")[-1] == 505
