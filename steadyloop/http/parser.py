"""HTTP/1.1 request parser: bytes in, events out. No I/O, no asyncio.

Usage (the grammar of events for one connection):

    parser.feed(data)
    event = parser.next_event()
        -> RequestHead          a complete, validated request head
        -> bytes                a piece of request body (never empty)
        -> END_OF_MESSAGE       the body is complete; the next event belongs to the next request
        -> NEED_DATA            feed more bytes

    RequestHead [bytes]* END_OF_MESSAGE  RequestHead ...

Anything malformed makes `next_event` raise `ProtocolError` with the status to
answer, *after* the events of the requests before it: a bad request pipelined
behind a good one does not cost the good one its response. The connection
must close after the error.

Tokenising is done by llhttp (through httptools), Node.js's parser, in its
strict mode; it refuses, among others: Content-Length with Transfer-Encoding,
repeated or non-numeric Content-Length, a Transfer-Encoding whose final coding
is not chunked, obs-fold, whitespace before the colon, bare CR or LF, bad or
overflowing chunk sizes, chunk data without its CRLF, and control characters
in header names and values. This module adds what llhttp leaves to servers:
the Host rules, size limits, Expect, and the status each refusal deserves.
Every one of these checks is a way to smuggle a request past a proxy that
reads the message differently, so we refuse rather than guess.
"""

from __future__ import annotations

from collections import deque
from typing import Final

import httptools

from steadyloop.http.errors import ProtocolError


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA: Final = _Sentinel("NEED_DATA")
END_OF_MESSAGE: Final = _Sentinel("END_OF_MESSAGE")

# Header names the parser acts on; everything else is passed through untouched.
_HOST: Final = 1
_EXPECT: Final = 2
_TRANSFER_ENCODING: Final = 3
_CONTENT_LENGTH: Final = 4
_FORWARDED: Final = 5
_SPECIAL = {
    b"x-forwarded-for": _FORWARDED,
    b"x-forwarded-proto": _FORWARDED,
    b"host": _HOST,
    b"expect": _EXPECT,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"content-length": _CONTENT_LENGTH,
}
_METHODS = {m.encode("ascii"): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}
# What a parsed head counts for in `buffered`, so that a flood of tiny pipelined requests
# is held back like the same number of body bytes would be.
_HEAD_WEIGHT: Final = 512
_TOKEN_CHARS = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class RequestHead:
    """A validated request head. Header names are lower-cased; values as received."""

    __slots__ = (
        "chunked",
        "content_length",
        "expect_continue",
        "forwarded",
        "headers",
        "http_version",
        "keep_alive",
        "method",
        "target",
        "upgrade",
    )

    def __init__(
        self,
        method: str,
        target: bytes,
        http_version: str,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        content_length: int,
        chunked: bool,
        expect_continue: bool,
        upgrade: bool,
        forwarded: bool = False,
    ) -> None:
        self.method = method
        self.target = target
        self.http_version = http_version
        self.headers = headers
        self.keep_alive = keep_alive
        self.content_length = content_length
        self.chunked = chunked
        self.expect_continue = expect_continue
        self.upgrade = upgrade
        self.forwarded = forwarded  # has X-Forwarded-For/-Proto (read only from trusted proxies)

    def __repr__(self) -> str:
        return f"<RequestHead {self.method} {self.target!r} HTTP/{self.http_version}>"


class _Abort(Exception):
    """Raised inside an llhttp callback to stop parsing with a ProtocolError."""

    def __init__(self, error: ProtocolError) -> None:
        self.error = error


class RequestParser:
    """Incremental parser for the requests arriving on one connection."""

    __slots__ = (
        "_content_length",
        "_events",
        "_expect_continue",
        "_forwarded",
        "_head_bytes",
        "_headers",
        "_host_count",
        "_llhttp",
        "_progressed",
        "_stalled",
        "_target",
        "_te",
        "buffered",
        "dead",
        "in_head",
        "max_head_size",
        "max_header_count",
        "max_header_size",
        "max_request_line",
        "upgrade_data",
    )

    def __init__(
        self,
        max_request_line: int = 8190,
        max_header_count: int = 100,
        max_header_size: int = 8190,
        max_head_size: int = 65536,
    ) -> None:
        self.max_request_line = max_request_line
        self.max_header_count = max_header_count
        self.max_header_size = max_header_size
        self.max_head_size = max_head_size
        self._llhttp = httptools.HttpRequestParser(self)
        self._events: deque[RequestHead | bytes | _Sentinel | ProtocolError] = deque()
        self.buffered = 0  # parsed but not yet taken: body bytes, plus a weight per head
        self.dead = False  # an error was found; later bytes are ignored
        self.in_head = False  # inside a request head (for the header-read timeout)
        self.upgrade_data = b""  # bytes that followed an Upgrade request's head
        self._reset_head()

    def _reset_head(self) -> None:
        self._target = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._stalled = 0  # bytes fed since the last complete header line of this head
        self._progressed = True
        self._host_count = 0
        self._expect_continue = False
        self._te = False
        self._content_length = 0
        self._forwarded = False

    # -- input ---------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if self.dead:
            return
        self._progressed = False
        try:
            self._llhttp.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # An Upgrade request (e.g. WebSocket) ends HTTP/1.1 on this connection: the bytes
            # after its head (llhttp gives their offset) belong to the protocol it switches
            # to, or, served as plain HTTP, to nobody; the connection closes after it.
            self.dead = True
            self.upgrade_data = data[exc.args[0] :] if exc.args else b""
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Abort):
                self._error(cause.error)
            else:
                raise
        except httptools.HttpParserInvalidMethodError:
            method = data.split(b" ", 1)[0]
            if method and all(c in _TOKEN_CHARS for c in method):
                # "An origin server that receives a request method that is unrecognized or
                # not implemented SHOULD respond with the 501" -- RFC 9110 §9.1
                self._error(ProtocolError(501, "method not implemented"))
            else:
                self._error(ProtocolError(400, "invalid method"))
        except httptools.HttpParserError as exc:
            self._error(_classify(str(exc)))
        if self.in_head and not self.dead:
            # llhttp keeps an unfinished header line in memory until it ends; a line that
            # never ends must not grow it forever. Counted after parsing, and only while no
            # line completes, so that a head's end and the body behind it arriving in one
            # read (or many small heads in a row) are never taken for one huge head.
            self._stalled = 0 if self._progressed else self._stalled + len(data)
            if self._stalled > self.max_head_size:
                self._error(ProtocolError(431, "request head too large"))

    def _error(self, error: ProtocolError) -> None:
        self.dead = True
        self._events.append(error)

    def next_event(self) -> RequestHead | bytes | _Sentinel:
        events = self._events
        if not events:
            return NEED_DATA
        event = events.popleft()
        if type(event) is bytes:
            self.buffered -= len(event)
        elif type(event) is RequestHead:
            self.buffered -= _HEAD_WEIGHT
        elif isinstance(event, ProtocolError):
            events.clear()
            raise event
        return event

    # -- llhttp callbacks ----------------------------------------------------------------

    # No on_message_begin: llhttp calls back only for methods that exist, and on_url comes
    # first in every request anyway.

    def on_url(self, url: bytes) -> None:
        self.in_head = True
        target = self._target + url if self._target else url
        if len(target) > self.max_request_line:
            raise _Abort(ProtocolError(414, "request target too long"))
        self._target = target

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._headers
        size = len(name) + len(value)
        if size > self.max_header_size:
            raise _Abort(ProtocolError(431, "header field too large"))
        if len(headers) >= self.max_header_count:
            raise _Abort(ProtocolError(431, "too many header fields"))
        self._head_bytes += size
        if self._head_bytes > self.max_head_size:
            raise _Abort(ProtocolError(431, "request head too large"))
        self._progressed = True
        name = name.lower()
        headers.append((name, value))
        kind = _SPECIAL.get(name)
        if kind is not None:
            if kind == _HOST:
                self._host_count += 1
            elif kind == _EXPECT:
                if value.lower() != b"100-continue":
                    raise _Abort(ProtocolError(417, "unsupported expectation"))
                self._expect_continue = True
            elif kind == _TRANSFER_ENCODING:
                self._te = True
            elif kind == _CONTENT_LENGTH:
                # llhttp has checked it is a plain number and not repeated.
                self._content_length = int(value)
            else:
                self._forwarded = True

    def on_headers_complete(self) -> None:
        parser = self._llhttp
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise _Abort(ProtocolError(505, "HTTP version not supported"))
        # "A server MUST respond with a 400 (Bad Request) status code to any HTTP/1.1
        # request message that lacks a Host header field and to any request message that
        # contains more than one Host header field" -- RFC 9112 §3.2
        if self._host_count > 1 or (self._host_count == 0 and version == "1.1"):
            raise _Abort(ProtocolError(400, "missing or repeated Host header"))
        if self._te and version == "1.0":
            # An HTTP/1.0 recipient cannot know chunked; a proxy may frame it differently.
            raise _Abort(ProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request"))
        upgrade = parser.should_upgrade()
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method)
        if method is None:
            method = raw_method.decode("ascii")
        head = RequestHead(
            method,
            self._target,
            version,
            self._headers,
            parser.should_keep_alive() and not upgrade,
            self._content_length,
            self._te,
            # "A server that receives a 100-continue expectation in an HTTP/1.0 request MUST
            # ignore that expectation" -- RFC 9110 §10.1.1
            self._expect_continue and version == "1.1",
            upgrade,
            self._forwarded,
        )
        self._reset_head()
        self.in_head = False
        self.buffered += _HEAD_WEIGHT
        self._events.append(head)

    def on_body(self, body: bytes) -> None:
        self.buffered += len(body)
        self._events.append(body)

    def on_message_complete(self) -> None:
        self._events.append(END_OF_MESSAGE)


def _classify(message: str) -> ProtocolError:
    """The status for an llhttp error; its message is kept as the reason."""
    lowered = message.lower()
    if "version" in lowered:
        return ProtocolError(505 if "invalid http version" in lowered else 400, message)
    if "transfer-encoding" in lowered and "unsupported" in lowered:
        return ProtocolError(501, message)
    return ProtocolError(400, message)
