"""Building HTTP/1.1 response heads: status lines, header validation, the Date value. No I/O.

`build_head` turns an application's status and headers into the bytes of a
response head and decides the framing (Content-Length, chunked, or read until
close; the body writers in `writers.py` carry it out). Header names and values
from the app are checked once per head with C-speed scans, never written when
they could split the response.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Final

from steadyloop.http.errors import ResponseError
from steadyloop.http.grammar import TOKEN
from steadyloop.http.writers import FRAMING_CHUNKED, FRAMING_CLOSE, FRAMING_LENGTH, FRAMING_NONE

_STATUS_LINES: dict[Any, bytes] = {}  # Any: looked up with whatever status the app gave


def status_line(status: Any) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        if not isinstance(status, int) or not 100 <= status <= 999:
            raise ResponseError(f"invalid status code {status!r}")
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        line = f"HTTP/1.1 {status} {phrase}\r\n".encode("ascii")
        _STATUS_LINES[status] = line
    return line


def simple_response(status: int, body: bytes = b"", *, extra: bytes = b"") -> bytes:
    """A complete plain-text response, for errors the server answers itself; the connection
    closes after it.

    `extra` is the server's own header block (Date, Server, --header values), as for any
    other response: "An origin server with a clock MUST generate a Date header field in all
    2xx (Successful), 3xx (Redirection), and 4xx (Client Error) responses" -- RFC 9110 §6.6.1.
    """
    if not body:
        body = HTTPStatus(status).phrase.encode("ascii") + b"\n"
    head = status_line(status) + b"content-type: text/plain; charset=utf-8\r\n"
    head += b"content-length: " + str(len(body)).encode("ascii") + b"\r\n"
    head += b"connection: close\r\n"
    return head + extra + b"\r\n" + body


# -- the Date header, cached per second --------------------------------------------------


class DateCache:
    """`Date` header bytes, formatted at most once per second."""

    __slots__ = ("_second", "value")

    def __init__(self) -> None:
        self._second = -1
        self.value = b""
        self.refresh()

    def refresh(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self.value = b"date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n"
        return self.value


# -- header names the server acts on -----------------------------------------------------

_PLAIN: Final = 0
_CONTENT_LENGTH: Final = 1
_TRANSFER_ENCODING: Final = 2
_CONNECTION: Final = 3
# Names seen before, with what they mean to the server. Apps use a handful of names, so
# this stays small; it is bounded anyway so that hostile apps cannot grow it forever.
_NAME_KINDS: dict[Any, int] = {  # Any: looked up with whatever name the app gave
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"connection": _CONNECTION,
}
_NAME_CACHE_LIMIT = 1024


def _name_kind(name: Any) -> int:
    kind = _NAME_KINDS.get(name)
    if kind is not None:
        return kind
    if type(name) is not bytes or TOKEN.fullmatch(name) is None:
        raise ResponseError(f"invalid response header name {name!r}")
    lower = name.lower()
    kind = _NAME_KINDS.get(lower, _PLAIN)
    if len(_NAME_KINDS) < _NAME_CACHE_LIMIT:
        _NAME_KINDS[name] = kind
    return kind


# Header lines already built and checked, by (name, value): most apps send the same few
# headers again and again, and a line found here costs no concatenation, no CR/LF/NUL scan
# and no int() of a Content-Length. Each entry is (line, kind, number); number is the value
# of a Content-Length, and 1 for a Connection that says close. Bounded like _NAME_KINDS, and
# only short lines are kept. A pair merely equal to a remembered one (a memoryview value, a
# bytes subclass) is found too and gets the remembered line: the same bytes on the wire as
# for the bytes pair, though built fresh it would be refused as "not bytes". Checking the
# types on every hit cost ~900 instructions per request (1.3%), so that is left as it is.
_LINES: dict[Any, tuple[bytes, int, int]] = {}
_LINES_LIMIT = 1024
_LINE_MAX = 256


def build_head(
    status: Any,
    headers: Iterable[Any],
    extra: bytes,
    body_allowed: bool,
    body_length: int,
    http_10: bool,
    keep_alive: bool,
) -> tuple[bytes, int, int, bool]:
    """Serialize a response head (positional arguments: this runs once per response).

    `extra` is the server's own header block (Date, Server, --header values).
    `body_allowed` is false for HEAD requests and 1xx/204/304 responses.
    `body_length` is the length of the whole body when the app gave it in one message,
    or -1 when more body follows. Returns (head bytes, framing, content-length or -1,
    keep_alive), keep_alive possibly turned off by the app or by the framing.
    """
    line = _STATUS_LINES.get(status)
    parts = [line if line is not None else status_line(status)]
    content_length = -1
    app_closes = False
    lines = _LINES
    new: list[tuple[Any, tuple[bytes, int, int]]] | None = None
    for item in headers:
        try:
            known = lines.get(item)
        except TypeError:  # an unhashable pair (a list, a bytearray): built below
            known = None
        if known is None:
            known = _header_line(item)
            if new is None:
                new = []
            new.append((item, known))
        line, kind, number = known
        if kind:
            if kind == _CONTENT_LENGTH:
                if content_length >= 0 and number != content_length:
                    # A proxy might frame by the other one: a response split in two.
                    raise ResponseError("conflicting Content-Length headers")
                content_length = number
            elif kind == _TRANSFER_ENCODING:
                continue  # framing is the server's job; an app's TE would lie about the body
            elif number:  # Connection: close
                keep_alive = False
                app_closes = True
        parts.append(line)
    if new is not None:
        # One scan each over the whole block rather than three per header: every line we
        # built ends in exactly one CRLF, so any other CR, LF (or a NUL) came from the app.
        block = b"".join(parts)
        count = len(parts)
        if block.count(b"\n") != count or block.count(b"\r") != count or block.find(b"\0") != -1:
            raise ResponseError("response header contains CR, LF or NUL")
        for item, known in new:
            if len(lines) < _LINES_LIMIT and len(known[0]) <= _LINE_MAX and type(item) is tuple:
                lines[item] = known
    if not body_allowed:
        framing = FRAMING_NONE
    elif content_length >= 0:
        framing = FRAMING_LENGTH
    elif body_length >= 0:
        framing = FRAMING_LENGTH
        content_length = body_length
        parts.append(b"content-length: " + str(body_length).encode("ascii") + b"\r\n")
    elif http_10:
        framing = FRAMING_CLOSE
        keep_alive = False
    else:
        framing = FRAMING_CHUNKED
        parts.append(b"transfer-encoding: chunked\r\n")
    if not keep_alive and not app_closes:
        parts.append(b"connection: close\r\n")
    elif http_10:
        parts.append(b"connection: keep-alive\r\n")
    parts.append(extra)
    parts.append(b"\r\n")
    return b"".join(parts), framing, content_length, keep_alive


def _header_line(item: Any) -> tuple[bytes, int, int]:
    """(line, kind, number) for one of the app's header pairs, not yet checked for CR, LF or
    NUL in the value (build_head scans the whole block once)."""
    name, value = item
    kind = _NAME_KINDS.get(name)
    if kind is None:
        kind = _name_kind(name)
    if type(value) is not bytes:
        raise ResponseError(f"response header value for {name!r} is not bytes")
    number = 0
    if kind == _CONTENT_LENGTH:
        if not value.isdigit():
            raise ResponseError(f"invalid Content-Length {value!r}")
        number = int(value)
    elif kind == _CONNECTION and value.lower().find(b"close") != -1:
        number = 1
    return name + b": " + value + b"\r\n", kind, number
