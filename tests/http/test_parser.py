"""RequestParser on its own: bytes in, events out. No sockets, no loop."""

from __future__ import annotations

from typing import Any

import pytest

from steadyloop.http.errors import ProtocolError
from steadyloop.http.parser import END_OF_MESSAGE, NEED_DATA, RequestHead, RequestParser, SpareParsers


def events(parser: RequestParser) -> list[Any]:
    out: list[Any] = []
    while True:
        event = parser.next_event()
        if event is NEED_DATA:
            return out
        out.append(event)


def parse(data: bytes, *, bytewise: bool = False, **limits: Any) -> list[Any]:
    """All events for `data`, fed whole or one byte at a time; body pieces joined."""
    parser = RequestParser(**limits)
    out: list[Any] = []
    pieces = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    for piece in pieces:
        parser.feed(piece)
        out.extend(events(parser))
    joined: list[Any] = []
    for event in out:
        if isinstance(event, bytes) and joined and isinstance(joined[-1], bytes):
            joined[-1] += event
        else:
            joined.append(event)
    return joined


def refused(data: bytes, *, bytewise: bool = False, **limits: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse(data, bytewise=bytewise, **limits)
    return info.value


# -- what is accepted ------------------------------------------------------------------------


@pytest.mark.parametrize("bytewise", [False, True])
def test_simple_get(bytewise: bool) -> None:
    out = parse(b"GET /a/b?x=1 HTTP/1.1\r\nHost: example\r\nX-Mixed-Case: Value\r\n\r\n", bytewise=bytewise)
    assert len(out) == 2 and out[1] is END_OF_MESSAGE
    head = out[0]
    assert isinstance(head, RequestHead)
    assert head.method == "GET"
    assert head.target == b"/a/b?x=1"
    assert head.http_version == "1.1"
    assert head.headers == [(b"host", b"example"), (b"x-mixed-case", b"Value")]
    assert head.keep_alive is True
    assert head.content_length == 0 and head.chunked is False
    assert head.expect_continue is False and head.upgrade is False


def test_keep_alive_rules() -> None:
    def keep(data: bytes) -> bool:
        head = parse(data)[0]
        assert isinstance(head, RequestHead)
        return head.keep_alive

    assert keep(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") is True
    assert keep(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n") is False
    assert keep(b"GET / HTTP/1.0\r\n\r\n") is False
    assert keep(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") is True


@pytest.mark.parametrize("bytewise", [False, True])
def test_content_length_body(bytewise: bool) -> None:
    out = parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world", bytewise=bytewise)
    assert isinstance(out[0], RequestHead) and out[0].content_length == 11
    assert out[1:] == [b"hello world", END_OF_MESSAGE]


@pytest.mark.parametrize("bytewise", [False, True])
def test_chunked_body(bytewise: bool) -> None:
    data = (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Checksum: x\r\n\r\n"
    )
    out = parse(data, bytewise=bytewise)
    assert isinstance(out[0], RequestHead) and out[0].chunked is True
    assert out[1:] == [b"hello 0123456789", END_OF_MESSAGE]


def test_body_pieces_arrive_as_fed() -> None:
    """Body is handed out as it arrives, not held until the message ends."""
    parser = RequestParser()
    parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    assert [type(e) for e in events(parser)] == [RequestHead, bytes]
    assert parser.next_event() is NEED_DATA
    parser.feed(b"defghij")
    assert events(parser) == [b"defghij", END_OF_MESSAGE]


def test_pipelined_requests_in_one_feed() -> None:
    data = b"".join(b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(16))
    data += b"POST /body HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyz"
    out = parse(data)
    heads = [e for e in out if isinstance(e, RequestHead)]
    assert [h.target for h in heads] == [b"/%d" % i for i in range(16)] + [b"/body"]
    # grammar: RequestHead [bytes]* END_OF_MESSAGE, repeated
    assert out[-3:] == [heads[-1], b"xyz", END_OF_MESSAGE]
    assert out.count(END_OF_MESSAGE) == 17


def test_buffered_counts_unread_body_and_heads() -> None:
    parser = RequestParser()
    parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000)
    assert parser.buffered >= 1000
    events(parser)
    assert parser.buffered == 0


def test_bad_request_behind_good_one_keeps_the_good_ones_events() -> None:
    parser = RequestParser()
    parser.feed(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\nGET /bad HTTP/1.1\r\n\r\n")
    head = parser.next_event()
    assert isinstance(head, RequestHead) and head.target == b"/ok"
    assert parser.next_event() is END_OF_MESSAGE
    with pytest.raises(ProtocolError) as info:
        parser.next_event()
    assert info.value.status == 400
    # dead after an error: later bytes are ignored
    parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert parser.next_event() is NEED_DATA


def test_http_10_without_host_is_fine() -> None:
    out = parse(b"GET / HTTP/1.0\r\n\r\n")
    assert isinstance(out[0], RequestHead) and out[0].http_version == "1.0"


def test_http_version_whatever_the_reads() -> None:
    # The version of the head a read starts with is read off the request line; every other
    # head's comes from llhttp. Every split of a mixed pipeline gives the same versions.
    data = (
        b"\r\nGET /a HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    for cut in range(len(data) + 1):
        parser = RequestParser()
        out: list[Any] = []
        for piece in (data[:cut], data[cut:]):
            if piece:
                parser.feed(piece)
                out.extend(events(parser))
        versions = [event.http_version for event in out if isinstance(event, RequestHead)]
        assert versions == ["1.1", "1.1", "1.0", "1.1"], cut
    assert refused(b"GET /a HTTP/2.0\r\nHost: a\r\n\r\n").status == 505


def test_expect_100_continue_is_flagged() -> None:
    out = parse(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
    assert isinstance(out[0], RequestHead) and out[0].expect_continue is True


def test_upgrade_request_is_served_then_parser_stops() -> None:
    parser = RequestParser()
    parser.feed(
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x00junk"
    )
    out = events(parser)
    assert isinstance(out[0], RequestHead) and out[0].upgrade is True and out[0].keep_alive is False
    assert parser.dead


# -- what is refused, with which status -------------------------------------------------------

REFUSED: dict[str, tuple[bytes, int]] = {
    "content-length with transfer-encoding": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "transfer-encoding with content-length": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        400,
    ),
    "two equal content-lengths": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        400,
    ),
    "two differing content-lengths": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
    ),
    "content-length list": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", 400),
    "content-length plus sign": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400),
    "content-length negative": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\nhello", 400),
    "content-length hex": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello", 400),
    "content-length overflow": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        400,
    ),
    "transfer-encoding gzip": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nhello", 400),
    "transfer-encoding chunked then gzip": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        400,
    ),
    "transfer-encoding xchunked": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "transfer-encoding chunked twice": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n",
        400,
    ),
    "transfer-encoding identity": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 400),
    "transfer-encoding on http/1.0": (
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "obs-fold space": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400),
    "obs-fold tab": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n", 400),
    "space before colon": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n", 400),
    "tab before colon": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A\t: b\r\n\r\n", 400),
    "space before first header": (b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
    "bare CR in header section": (b"GET / HTTP/1.1\r\nHost: a\rX-A: b\r\n\r\n", 400),
    "bare LF in header section": (b"GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n", 400),
    "bare LF after request line": (b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
    "bare CR after request line": (b"GET / HTTP/1.1\rHost: a\r\n\r\n", 400),
    "bare LF ending the head": (b"GET / HTTP/1.1\r\nHost: a\r\n\n", 400),
    "chunk size not hex": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    "chunk size negative": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    "chunk size 0x prefix": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    "chunk size trailing space": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
        400,
    ),
    "chunk size overflow": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"FFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    "chunk data without CRLF": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        400,
    ),
    "chunk data with bare LF": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n",
        400,
    ),
    "chunk size with bare LF": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        400,
    ),
    "NUL in header name": (b"GET / HTTP/1.1\r\nHost: a\r\nX-\x00A: b\r\n\r\n", 400),
    "NUL in header value": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", 400),
    "CR in header name": (b"GET / HTTP/1.1\r\nHost: a\r\nX-\rA: b\r\n\r\n", 400),
    "CR in header value": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", 400),
    "LF in header name": (b"GET / HTTP/1.1\r\nHost: a\r\nX-\nA: b\r\n\r\n", 400),
    "LF in header value": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\nc\r\n\r\n", 400),
    "VT in header name": (b"GET / HTTP/1.1\r\nHost: a\r\nX-\x0bA: b\r\n\r\n", 400),
    "VT in header value": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x0bc\r\n\r\n", 400),
    "FF in header name": (b"GET / HTTP/1.1\r\nHost: a\r\nX-\x0cA: b\r\n\r\n", 400),
    "FF in header value": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x0cc\r\n\r\n", 400),
    "ESC in header value": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x1bc\r\n\r\n", 400),
    "DEL in header value": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x7fc\r\n\r\n", 400),
    "empty header name": (b"GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", 400),
    "header line without colon": (b"GET / HTTP/1.1\r\nHost: a\r\nXYZ\r\n\r\n", 400),
    "missing host": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "two hosts": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "two equal hosts": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
    "two hosts on http/1.0": (b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "invalid method token": (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "method with control char": (b"GE\x01 / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "unknown method": (b"FROB / HTTP/1.1\r\nHost: a\r\n\r\n", 501),
    "control char in target": (b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "space in target": (b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "not http": (b"GET / HTTQ/1.1\r\nHost: a\r\n\r\n", 400),
    "http/2.0": (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    "http/1.2": (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505),
    "http/0.9": (b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505),
    "unknown expectation": (b"GET / HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\n\r\n", 417),
}


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize("name", list(REFUSED))
def test_refused(name: str, bytewise: bool) -> None:
    data, status = REFUSED[name]
    assert refused(data, bytewise=bytewise).status == status


def test_refusal_behind_a_pipelined_request_keeps_its_status() -> None:
    """The status of a bad request does not depend on what came before it in the same read."""
    good = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    names = ("unknown method", "invalid method token", "missing host", "bare LF ending the head", "two hosts")
    for name in names:
        data, status = REFUSED[name]
        parser = RequestParser()
        parser.feed(good + data)
        assert isinstance(parser.next_event(), RequestHead)
        assert parser.next_event() is END_OF_MESSAGE
        with pytest.raises(ProtocolError) as info:
            parser.next_event()
        assert info.value.status == status, name


# -- limits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bytewise", [False, True])
def test_long_target_is_414(bytewise: bool) -> None:
    data = b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: a\r\n\r\n"
    assert refused(data, bytewise=bytewise, max_request_line=200).status == 414
    assert isinstance(parse(data, max_request_line=400)[0], RequestHead)


def test_too_many_headers_is_431() -> None:
    headers = b"".join(b"X-%d: 1\r\n" % i for i in range(20))
    data = b"GET / HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n"
    assert refused(data, max_header_count=10).status == 431
    assert isinstance(parse(data, max_header_count=21)[0], RequestHead)


@pytest.mark.parametrize("bytewise", [False, True])
def test_header_field_too_large_is_431(bytewise: bool) -> None:
    data = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 500 + b"\r\n\r\n"
    assert refused(data, bytewise=bytewise, max_header_size=200).status == 431
    assert isinstance(parse(data, max_header_size=600)[0], RequestHead)


def test_head_that_never_ends_is_431_without_growing() -> None:
    """A single header value trickling in forever is cut off at the head-size limit."""
    parser = RequestParser(max_head_size=4096, max_header_size=1 << 20)
    parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX-Endless: ")
    for _ in range(100):
        parser.feed(b"v" * 100)
        if parser.dead:
            break
    assert parser.dead
    with pytest.raises(ProtocolError) as info:
        events(parser)
    assert info.value.status == 431


def test_whole_head_too_large_is_431() -> None:
    headers = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 100) for i in range(60))
    data = b"GET / HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n"
    assert refused(data, max_head_size=4096).status == 431


def test_head_split_across_reads_with_a_big_body_is_not_431() -> None:
    """Body bytes arriving in the same read as the end of the head are not head bytes."""
    parser = RequestParser()
    body = b"x" * 200_000
    parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\n")
    parser.feed(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    out = events(parser)
    assert isinstance(out[0], RequestHead)
    assert b"".join(e for e in out if isinstance(e, bytes)) == body
    assert out[-1] is END_OF_MESSAGE


def test_head_of_moderate_size_in_many_reads_is_not_431() -> None:
    """A 40 KB head (under the 64 KB limit) fed in small pieces is accepted."""
    headers = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 400) for i in range(90))
    data = b"GET / HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n"
    assert len(data) < 65536
    parser = RequestParser()
    for i in range(0, len(data), 1000):
        parser.feed(data[i : i + 1000])
    out = events(parser)
    assert isinstance(out[0], RequestHead) and out[-1] is END_OF_MESSAGE


def test_many_keep_alive_requests_do_not_accumulate_head_size() -> None:
    parser = RequestParser(max_head_size=4096)
    request = b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"p" * 500 + b"\r\n\r\n"
    for _ in range(50):
        for i in range(0, len(request), 7):
            parser.feed(request[i : i + 7])
        out = events(parser)
        assert isinstance(out[0], RequestHead) and out[-1] is END_OF_MESSAGE


def test_a_parser_is_at_rest_only_between_kept_alive_requests_with_nothing_held() -> None:
    # What a connection checks before giving its parser back to the worker's spares.
    parser = RequestParser()
    assert parser.at_rest()
    parser.feed(b"GET / HTTP/1.1\r\nHost: x\r\n")
    assert not parser.at_rest()  # part of a head fed
    parser.feed(b"\r\n")
    assert not parser.at_rest()  # its events are not taken yet
    events(parser)
    assert parser.at_rest()
    parser.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
    events(parser)
    assert not parser.at_rest()  # inside a body
    parser.feed(b"cd")
    events(parser)
    assert parser.at_rest()
    parser.feed(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    events(parser)
    assert not parser.at_rest()  # llhttp refuses bytes after a request that closes
    for last in (
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: ws\r\nConnection: upgrade\r\n\r\n",
    ):
        parser = RequestParser()
        parser.feed(last)
        events(parser)
        assert not parser.at_rest()
    parser = RequestParser()
    parser.feed(b"BAD\x01 / HTTP/1.1\r\n\r\n")
    assert not parser.at_rest()  # dead, its error waiting


def test_a_parser_given_back_at_rest_parses_like_a_new_one() -> None:
    spares = SpareParsers(8190, 100, 8190, 65536)
    parser = spares.take()
    parser.feed(b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
    assert type(events(parser)[0]) is RequestHead
    assert parser.at_rest()
    spares.give_back(parser)
    again = spares.take()
    assert again is parser and spares.take() is not parser  # one spare, then new ones
    for data in (b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n", b"GXT /c HTTP/1.1\r\nHost: x\r\n\r\n"):
        fresh = RequestParser()
        reused = spares.take()
        reused.feed(b"GET /warm HTTP/1.1\r\nHost: x\r\n\r\n")
        events(reused)
        assert reused.at_rest()
        results = []
        for p in (fresh, reused):
            try:
                p.feed(data)
                results.append([(e.method, e.target) if isinstance(e, RequestHead) else e for e in events(p)])
            except ProtocolError as exc:
                results.append([exc.status, exc.reason])
        assert results[0] == results[1]
