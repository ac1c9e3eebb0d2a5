"""HTTP/1.1 response body framing, one writer per kind. Pure: bytes in, bytes out.

`build_head` decides the framing of a response (RFC 9112 §6); the writer for it
turns each piece of body the app sends into the bytes that go on the wire, and
says what ends the body:

    writer.frame(data) -> bytes      the bytes for one piece of body
    writer.finish()    -> bytes      what ends the body (the last chunk for chunked)

Only a Content-Length body has state (how much is still owed), so the other
writers are shared singletons; the most common response of all (the whole body
in one message with its length) needs no writer at all.
"""

from __future__ import annotations

from typing import Final

from steadyloop.http.errors import ResponseError

# Framing of a response body, as decided by build_head.
FRAMING_NONE: Final = 0  # no body at all (HEAD, 1xx, 204, 304)
FRAMING_LENGTH: Final = 1  # Content-Length
FRAMING_CHUNKED: Final = 2  # Transfer-Encoding: chunked
FRAMING_CLOSE: Final = 3  # the body ends when the connection closes (HTTP/1.0 without a length)


class BodyWriter:
    """Framing for one response body. Subclasses override both methods."""

    __slots__ = ()

    def frame(self, data: bytes) -> bytes:
        raise NotImplementedError

    def finish(self) -> bytes:
        raise NotImplementedError

    @property
    def owed(self) -> int:
        """Body bytes promised but not sent (a Content-Length the app did not fill)."""
        return 0


class _NoBody(BodyWriter):
    __slots__ = ()

    def frame(self, data: bytes) -> bytes:
        # "Any response to a HEAD request and any response with a 1xx, 204 or 304 status code
        # is always terminated by the first empty line after the header fields" -- RFC 9112 §6.3
        return b""

    def finish(self) -> bytes:
        return b""


class _Chunked(BodyWriter):
    __slots__ = ()

    def frame(self, data: bytes) -> bytes:
        # An empty chunk would end the body early: it is the last-chunk marker.
        return b"%x\r\n%b\r\n" % (len(data), data) if data else b""

    def finish(self) -> bytes:
        return b"0\r\n\r\n"


class _CloseDelimited(BodyWriter):
    __slots__ = ()

    def frame(self, data: bytes) -> bytes:
        return data

    def finish(self) -> bytes:
        return b""  # the connection's close is the end of the body


class LengthWriter(BodyWriter):
    """A body with a declared Content-Length: never more than announced."""

    __slots__ = ("left",)

    def __init__(self, length: int) -> None:
        self.left = length

    def frame(self, data: bytes) -> bytes:
        left = self.left - len(data)
        if left < 0:
            # More bytes would be read as the start of the next response.
            raise ResponseError("ASGI app sent more bytes than its Content-Length")
        self.left = left
        return data

    def finish(self) -> bytes:
        return b""

    @property
    def owed(self) -> int:
        return self.left


NO_BODY: Final = _NoBody()
CHUNKED: Final = _Chunked()
CLOSE_DELIMITED: Final = _CloseDelimited()


def writer_for(framing: int, content_length: int) -> BodyWriter:
    """The writer for a framing decided by build_head."""
    if framing == FRAMING_LENGTH:
        return LengthWriter(content_length)
    if framing == FRAMING_CHUNKED:
        return CHUNKED
    if framing == FRAMING_CLOSE:
        return CLOSE_DELIMITED
    return NO_BODY
