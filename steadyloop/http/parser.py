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
the Host rules, size limits (on the head, on chunk-size lines with their
extensions, on the trailer section), the fields a trailer may not carry,
Expect, and the status each refusal deserves, the same however the bytes are
split into reads.

Trailer fields of a chunked request are checked and then dropped: they are
never delivered to the app, and never become part of another request.
Every one of these checks is a way to smuggle a request past a proxy that
reads the message differently, so we refuse rather than guess.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Final

import httptools

from steadyloop.http.errors import ProtocolError
from steadyloop.http.grammar import TCHAR_BYTES


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
# Fields that must not arrive in a trailer: the recipient has acted on the header section
# before the trailer arrives. "Many fields cannot be processed outside the header section
# because their evaluation is necessary prior to receiving the content, such as those that
# describe message framing, routing, authentication, request modifiers, response controls,
# or content format." -- RFC 9110 §6.5.1. One of these in a trailer is someone hoping a
# proxy merges it into the head: refused.
_FORBIDDEN_IN_TRAILER = frozenset(
    {
        b"authorization",
        b"connection",
        b"content-encoding",
        b"content-length",
        b"content-range",
        b"content-type",
        b"cookie",
        b"expect",
        b"forwarded",
        b"host",
        b"keep-alive",
        b"max-forwards",
        b"proxy-authorization",
        b"proxy-connection",
        b"range",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-proto",
    }
)
_V11_END: Final = b" HTTP/1.1\r\n"
_METHODS = {m.encode("ascii"): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}
# What a parsed head counts for in `buffered`, so that a flood of tiny pipelined requests
# is held back like the same number of body bytes would be.
_HEAD_WEIGHT: Final = 512
# A head (or trailer section) we are going to refuse is read to its end, so that llhttp's
# verdict on the lines after the offending one comes first; but not beyond this many times
# the head-size limit (Limits.max_head_size).
_CUT_OFF: Final = 4
# The reason of a refusal by the incomplete-line bound (see `feed`), which counts reads.
READ_BOUND_PREFIX: Final = "unfinished line: "


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
        "_chunked",
        "_content_length",
        "_expect_continue",
        "_first_in_read",
        "_forwarded",
        "_head_bytes",
        "_headers",
        "_host_count",
        "_idle",
        "_llhttp",
        "_progressed",
        "_refusal",
        "_reusable",
        "_stalled",
        "_target",
        "_te",
        "_te_values",
        "_trailer_bytes",
        "_trailer_count",
        "_trailers_next",
        "_window",
        "buffered",
        "dead",
        "events",
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
        # Parsed, not yet taken by next_event (the connection takes an END_OF_MESSAGE that
        # comes first itself: it is most of a request's events, and changes no count).
        self.events: deque[RequestHead | bytes | _Sentinel | ProtocolError] = deque()
        self.buffered = 0  # parsed but not yet taken: body bytes, plus a weight per head
        self.dead = False  # an error was found; later bytes are ignored
        self.in_head = False  # inside a request head (for the header-read timeout)
        self.upgrade_data = b""  # bytes that followed an Upgrade request's head
        self._chunked = False  # inside a chunked body: chunk-size lines, data, trailer section
        self._trailers_next = False  # a chunk-size line ended and no data followed: the last chunk
        self._trailer_count = 0
        self._trailer_bytes = 0
        self._idle = True  # between requests: no byte of the next one fed yet (CRLFs aside)
        # The bytes fed since the parser was last idle at the start of a read, up to
        # max_head_size: enough to find where a bad method starts (see _method_error).
        self._window: bytes | None = b""
        # No head has ended since the parser was last idle at a read's start: the next head to
        # end is the one `_window` starts with (see _http_version).
        self._first_in_read = False
        # The last request left the connection open: llhttp takes more bytes (see at_rest).
        self._reusable = True
        self._reset_head()

    def _reset_head(self) -> None:
        # Inlined in on_headers_complete: keep the two in step.
        self._target = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._stalled = 0  # bytes fed since the last complete header line of this head
        self._progressed = True
        self._host_count = 0
        self._expect_continue = False
        self._te = False
        self._te_values: tuple[bytes, ...] = ()  # rare: a tuple grown per value, no list per request
        self._refusal: ProtocolError | None = None  # ours, said when the head (trailer) ends
        self._content_length = 0
        self._forwarded = False

    # -- input ---------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if self.dead:
            return
        if self._idle:
            self._window = data
            self._first_in_read = True
        elif self._window is not None:
            window = self._window + data
            self._window = window if len(window) <= self.max_head_size else None
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
            self._error(self._method_error())
        except httptools.HttpParserError as exc:
            self._error(_classify(str(exc)))
        if self.dead or not (self.in_head or self._chunked):
            self._stalled = 0
        else:
            # llhttp keeps an unfinished header (or trailer) line in memory until it ends,
            # and reads a chunk extension for as long as it goes on: a line that never ends
            # must not hold memory or the connection forever. Such a line holds no LF (llhttp
            # is strict), so when something completed in this read, the unfinished line is
            # what follows the read's last LF; otherwise the whole read belongs to it.
            # httptools giving no positions, a line that starts and ends within one read is
            # not measured here (the field limits still apply to what it holds), so these
            # refusals are the one answer that can depend on how the bytes are split.
            if self._progressed:
                last_lf = data.rfind(b"\n")
                self._stalled = len(data) - last_lf - 1 if last_lf != -1 else 0
            else:
                self._stalled += len(data)
            if self.in_head:
                if self._stalled > self.max_head_size:
                    self._error(ProtocolError(431, READ_BOUND_PREFIX + "header line too long"))
            elif self._trailers_next:
                if self._stalled > self.max_header_size:
                    self._error(ProtocolError(431, READ_BOUND_PREFIX + "trailer line too long"))
            elif self._stalled > self.max_header_size:
                # Node.js bounds the same thing since CVE-2024-22019.
                self._error(ProtocolError(400, READ_BOUND_PREFIX + "chunk extension too long"))

    def _method_error(self) -> ProtocolError:
        """The status for a request line whose method llhttp refused.

        "An origin server that receives a request method that is unrecognized or not
        implemented SHOULD respond with the 501" -- RFC 9110 §9.1; a request line whose
        method is not a token is invalid: 400 (RFC 9112 §3). llhttp stops at the first byte
        that cannot continue a method it knows, so what it has read of the method is a
        prefix of a known name, and that byte decides: a token character, or the space
        after a non-empty method, makes an unknown method (501); anything else, 400.
        httptools does not say where that byte is, so fresh parsers find it in the bytes
        since the parser was last idle at a read's start (`_window`): the answer depends on
        the bytes, never on how they were split into reads.
        """
        window = self._window
        if window is not None:
            found = _where_refused(window)
            if found is not None:
                start, at = found
                byte = window[at]
                if byte in TCHAR_BYTES or (byte == 0x20 and at > start):
                    return ProtocolError(501, "method not implemented")
        return ProtocolError(400, "invalid method")

    def _error(self, error: ProtocolError) -> None:
        self.dead = True
        self.events.append(error)

    def at_rest(self) -> bool:
        """Between requests and holding nothing: no event waiting, no byte of a next request
        fed, no error, and the last request left the connection open (after one that did
        not, llhttp refuses further bytes). Such a parser is as good as a new one, for any
        connection (see Http1Connection.data_received)."""
        return self._idle and not self.events and not self.dead and self._reusable

    def next_event(self) -> RequestHead | bytes | _Sentinel:
        events = self.events
        if not events:
            return NEED_DATA
        event = events.popleft()
        # The commonest first: every request has a head and an end, few have a body.
        if type(event) is RequestHead:
            self.buffered -= _HEAD_WEIGHT
        elif event is END_OF_MESSAGE:
            pass
        elif type(event) is bytes:
            self.buffered -= len(event)
        elif isinstance(event, ProtocolError):
            events.clear()
            raise event
        return event

    # -- llhttp callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._idle = False

    def on_url(self, url: bytes) -> None:
        self.in_head = True
        target = self._target + url if self._target else url
        if len(target) > self.max_request_line:
            raise _Abort(ProtocolError(414, "request target too long"))
        self._target = target

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._chunked:
            self._on_trailer(name, value)
            return
        # httptools reports a field only once the next one starts (or the head ends), so
        # whether a field is seen before llhttp refuses a broken line after it depends on
        # where a read ends. Our own refusals therefore wait for the end of the head
        # (`_refusal`), where llhttp has judged every line: the same bytes always get the
        # same answer. Past the limits nothing more is kept, and a head that goes on far
        # beyond them is cut off at once.
        size = len(name) + len(value)
        self._head_bytes += size
        self._progressed = True
        if self._refusal is not None:
            if self._head_bytes > _CUT_OFF * self.max_head_size:
                raise _Abort(self._refusal)
            return
        if size > self.max_header_size:
            self._refusal = ProtocolError(431, "header field too large")
            return
        headers = self._headers
        if len(headers) >= self.max_header_count:
            self._refusal = ProtocolError(431, "too many header fields")
            return
        if self._head_bytes > self.max_head_size:
            self._refusal = ProtocolError(431, "request head too large")
            return
        name = name.lower()
        # "A field line value might be preceded and/or followed by optional whitespace (OWS)
        # ... a parser should exclude such whitespace prior to evaluating the field value"
        # -- RFC 9112 §5.1. llhttp drops the leading OWS only. (rstrip returns the same
        # object when there is nothing to strip.)
        value = value.rstrip(b" \t")
        headers.append((name, value))
        kind = _SPECIAL.get(name)
        if kind is not None:
            if kind == _HOST:
                self._host_count += 1
            elif kind == _EXPECT:
                if value.lower() != b"100-continue":
                    self._refusal = ProtocolError(417, "unsupported expectation")
                self._expect_continue = True
            elif kind == _TRANSFER_ENCODING:
                self._te = True
                self._te_values += (value,)
            elif kind == _CONTENT_LENGTH:
                # llhttp has checked it is a plain number and not repeated.
                self._content_length = int(value)
            else:
                self._forwarded = True

    def on_headers_complete(self) -> None:
        if self._refusal is not None:
            raise _Abort(self._refusal)
        parser = self._llhttp
        raw_method = parser.get_method()
        # The version: httptools formats it into a new string for every head. When `_window`
        # starts with this head (the first to end since the parser was idle at a read's
        # start), " HTTP/1.1" CRLF right after "METHOD SP target" is its request line's end,
        # so the version is 1.1. (Were the window to start with CRLFs before the head, that
        # SP would fall inside the target, and llhttp strict allows no SP, CR or LF there.)
        window = self._window
        if (
            self._first_in_read
            and window is not None
            and window.startswith(_V11_END, len(raw_method) + 1 + len(self._target))
        ):
            version = "1.1"
        else:
            version = parser.get_http_version()
        self._first_in_read = False
        if version not in ("1.1", "1.0"):
            raise _Abort(ProtocolError(505, "HTTP version not supported"))
        # "A server MUST respond with a 400 (Bad Request) status code to any HTTP/1.1
        # request message that lacks a Host header field and to any request message that
        # contains more than one Host header field" -- RFC 9112 §3.2
        if self._host_count > 1 or (self._host_count == 0 and version == "1.1"):
            raise _Abort(ProtocolError(400, "missing or repeated Host header"))
        if self._te:
            if version == "1.0":
                # An HTTP/1.0 recipient cannot know chunked; a proxy may frame it differently.
                raise _Abort(ProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request"))
            self._check_codings()
        upgrade = parser.should_upgrade()
        method = _METHODS.get(raw_method)
        if method is None:
            method = raw_method.decode("ascii")
        keep_alive = self._reusable = parser.should_keep_alive() and not upgrade
        head = RequestHead(
            method,
            self._target,
            version,
            self._headers,
            keep_alive,
            self._content_length,
            self._te,
            # "A server that receives a 100-continue expectation in an HTTP/1.0 request MUST
            # ignore that expectation" -- RFC 9110 §10.1.1
            self._expect_continue and version == "1.1",
            upgrade,
            self._forwarded,
        )
        # _reset_head, inlined (once per request); _progressed is set rather than reset, and
        # _refusal is None already (one would have been raised above).
        self._target = b""
        self._headers = []
        self._head_bytes = 0
        self._stalled = 0
        self._progressed = True
        self._host_count = 0
        self._expect_continue = False
        self._te = False
        self._te_values = ()
        self._content_length = 0
        self._forwarded = False
        self.in_head = False
        if head.chunked:
            self._chunked = True
            self._trailer_count = self._trailer_bytes = 0
        self.buffered += _HEAD_WEIGHT
        self.events.append(head)

    def _check_codings(self) -> None:
        codings = [c.strip().lower() for v in self._te_values for c in v.split(b",") if c.strip()]
        # A final coding other than chunked is llhttp's to refuse (400, RFC 9112 §6.3). Before
        # a final chunked, anything but chunked is a coding we would pass on undecoded:
        # "A server that receives a request message with a transfer coding it does not
        # understand SHOULD respond with 501 (Not Implemented)." -- RFC 9112 §6.1
        if codings and codings[-1] == b"chunked" and any(c != b"chunked" for c in codings):
            raise _Abort(ProtocolError(501, "transfer coding not implemented"))

    def on_body(self, body: bytes) -> None:
        self._progressed = True
        self._trailers_next = False
        self.buffered += len(body)
        self.events.append(body)

    def on_chunk_header(self) -> None:
        # The chunk-size line (and its extensions) ended; data follows unless it was the last
        # chunk, and then what follows is the trailer section.
        self._progressed = True
        self._trailers_next = True

    def on_chunk_complete(self) -> None:
        # After the last chunk this comes once the trailer section is complete and checked
        # by llhttp: the time for our own refusal of it.
        if self._refusal is not None:
            raise _Abort(self._refusal)
        self._progressed = True
        self._trailers_next = False

    def _on_trailer(self, name: bytes, value: bytes) -> None:
        """A trailer field (llhttp reports them like header fields): bounded like the head,
        checked, then dropped -- it belongs to this request, never to the next one. As in
        the head, a refusal waits for the end of the trailer section."""
        self._progressed = True
        size = len(name) + len(value)
        self._trailer_count += 1
        self._trailer_bytes += size
        if self._refusal is not None:
            if self._trailer_bytes > _CUT_OFF * self.max_head_size:
                raise _Abort(self._refusal)
        elif size > self.max_header_size:
            self._refusal = ProtocolError(431, "trailer field too large")
        elif self._trailer_count > self.max_header_count:
            self._refusal = ProtocolError(431, "too many trailer fields")
        elif self._trailer_bytes > self.max_head_size:
            self._refusal = ProtocolError(431, "trailer section too large")
        elif name.lower() in _FORBIDDEN_IN_TRAILER:
            self._refusal = ProtocolError(400, "field not allowed in a trailer")

    def on_message_complete(self) -> None:
        self._chunked = self._trailers_next = False
        self._idle = True
        self.events.append(END_OF_MESSAGE)


class SpareParsers:
    """One worker's parsers not in use, for connections to borrow a parser per read and
    give it back when it is at rest (Http1Connection.data_received): with many connections
    the reads share a few parsers, in cache, and a connection between requests holds none."""

    __slots__ = ("_limits", "_spare")

    def __init__(
        self, max_request_line: int, max_header_count: int, max_header_size: int, max_head_size: int
    ) -> None:
        self._limits = (max_request_line, max_header_count, max_header_size, max_head_size)
        self._spare: RequestParser | None = None

    def take(self) -> RequestParser:
        spare = self._spare
        if spare is None:
            return RequestParser(*self._limits)
        self._spare = None
        return spare

    def give_back(self, parser: RequestParser) -> None:
        """`parser` is at rest (see RequestParser.at_rest): as good as a new one. One spare is
        kept; more would only be needed while connections hold part-read requests."""
        self._spare = parser


def _where_refused(window: bytes) -> tuple[int, int] | None:
    """For `window` (starting between requests): where the request llhttp refuses starts,
    and the index of the byte it stops at; None if it refuses nothing. Error path only."""
    if not _begins(window)[1]:
        return None
    at = _shortest(len(window), lambda n: _begins(window[:n])[1]) - 1
    total = _begins(window[: at + 1])[0]
    start = _shortest(at + 1, lambda n: _begins(window[:n])[0] == total) - 1
    return start, at


def _shortest(length: int, holds: Callable[[int], bool]) -> int:
    """The least n in 1..length for which `holds(n)`, given it holds for length and stays true."""
    low, high = 1, length
    while low < high:
        middle = (low + high) // 2
        if holds(middle):
            high = middle
        else:
            low = middle + 1
    return high


class _BeginCounter:
    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def on_message_begin(self) -> None:
        self.count += 1


def _begins(data: bytes) -> tuple[int, bool]:
    """(messages begun, refused) for `data` fed to a fresh parser."""
    counter = _BeginCounter()
    try:
        httptools.HttpRequestParser(counter).feed_data(data)
    except httptools.HttpParserUpgrade:
        return counter.count, False
    except httptools.HttpParserError:
        return counter.count, True
    return counter.count, False


def _classify(message: str) -> ProtocolError:
    """The status for an llhttp error; its message is kept as the reason."""
    lowered = message.lower()
    if "pause on pri" in lowered:
        # "PRI * HTTP/2.0": an HTTP/2 client with prior knowledge, on an HTTP/1.1 server.
        return ProtocolError(505, "HTTP/2 is not spoken here")
    if "invalid method for" in lowered or "preface" in lowered:
        # A well-formed method llhttp knows from RTSP ("DESCRIBE", "ANNOUNCE"...) or HTTP/2's
        # "PRI": unknown to HTTP/1.1, so the same answer as any other unknown token.
        return ProtocolError(501, "method not implemented")
    if "version" in lowered:
        return ProtocolError(505 if "invalid http version" in lowered else 400, message)
    if "transfer-encoding" in lowered and "unsupported" in lowered:
        return ProtocolError(501, message)
    return ProtocolError(400, message)
