"""The opening handshake, pure: an upgrade request head in, a verdict and the 101 head out.

The HTTP/1.1 parser has already read and validated the request head; this module
checks what RFC 6455 §4.2.1 adds, negotiates permessage-deflate (RFC 7692) and the
subprotocol list the app chooses from, and writes the `101 Switching Protocols` head
once the app accepts. No I/O, no asyncio.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from websockets.exceptions import InvalidHeader, NegotiationError
from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.headers import build_extension, parse_extension, parse_subprotocol

from steadyloop.http.parser import RequestHead
from steadyloop.http.response import status_line

# RFC 6455 §1.3: the GUID every server appends to the client's key.
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class HandshakeRefused(Exception):
    """The upgrade request is not a valid WebSocket opening handshake."""

    def __init__(self, status: int, reason: str, headers: bytes = b"") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers  # extra response header lines, CRLF-terminated

    def response(self) -> bytes:
        """The complete answer: a plain-text 4xx that closes the connection."""
        body = (self.reason + "\n").encode("utf-8")
        return (
            status_line(self.status)
            + b"content-type: text/plain; charset=utf-8\r\ncontent-length: "
            + str(len(body)).encode("ascii")
            + b"\r\nconnection: close\r\n"
            + self.headers
            + b"\r\n"
            + body
        )


@dataclass(frozen=True)
class Offer:
    """What a valid handshake request asks for."""

    key: bytes
    subprotocols: list[str]
    extensions: str | None  # the raw Sec-WebSocket-Extensions value(s), joined


def is_websocket_upgrade(head: RequestHead) -> bool:
    """Does the Upgrade header name the websocket protocol? (The parser has seen
    `Connection: upgrade` and an Upgrade header, or head.upgrade would be false.)"""
    for name, value in head.headers:
        if name == b"upgrade":
            return any(token.strip().lower() == b"websocket" for token in value.split(b","))
    return False


def check_request(head: RequestHead) -> Offer:
    """Validate the handshake request -- RFC 6455 §4.2.1 -- or raise HandshakeRefused."""
    # "An HTTP/1.1 or higher GET request" -- RFC 6455 §4.2.1 item 1
    if head.method != "GET" or head.http_version != "1.1":
        raise HandshakeRefused(400, "a WebSocket handshake must be an HTTP/1.1 GET")
    key: bytes | None = None
    versions: list[bytes] = []
    protocols: list[str] = []
    extensions: list[str] = []
    for name, value in head.headers:
        if name == b"sec-websocket-key":
            if key is not None:
                raise HandshakeRefused(400, "repeated Sec-WebSocket-Key")
            key = value.strip()
        elif name == b"sec-websocket-version":
            versions.append(value.strip())
        elif name == b"sec-websocket-protocol":
            try:
                protocols += parse_subprotocol(value.decode("latin-1"))
            except InvalidHeader:
                raise HandshakeRefused(400, "invalid Sec-WebSocket-Protocol") from None
        elif name == b"sec-websocket-extensions":
            extensions.append(value.decode("latin-1"))
    # "If this version does not match a version understood by the server, the server MUST
    # abort the WebSocket handshake ... and instead send an appropriate HTTP error code
    # (such as 426 Upgrade Required) and a |Sec-WebSocket-Version| header field indicating
    # the version(s) the server is capable of understanding." -- RFC 6455 §4.4
    if versions != [b"13"]:
        raise HandshakeRefused(426, "unsupported WebSocket version", b"sec-websocket-version: 13\r\n")
    # "a |Sec-WebSocket-Key| header field with a base64-encoded value that, when decoded, is
    # 16 bytes in length" -- RFC 6455 §4.2.1 item 5
    if key is None:
        raise HandshakeRefused(400, "missing Sec-WebSocket-Key")
    try:
        decoded = base64.b64decode(key, validate=True)
    except binascii.Error:
        decoded = b""
    if len(decoded) != 16:
        raise HandshakeRefused(400, "invalid Sec-WebSocket-Key")
    return Offer(key, protocols, ", ".join(extensions) or None)


def accept_key(key: bytes) -> bytes:
    """Sec-WebSocket-Accept: base64(SHA-1(key + GUID)) -- RFC 6455 §4.2.2 item 5.4."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def deflate_factory() -> ServerPerMessageDeflateFactory:
    """permessage-deflate as offered by steadyloop: 4 KiB windows (2**12) each way and a
    smaller zlib memory level, so that an idle compressed socket costs ~40 KiB, not ~300."""
    return ServerPerMessageDeflateFactory(
        server_max_window_bits=12, client_max_window_bits=12, compress_settings={"memLevel": 5}
    )


def negotiate_extensions(
    offer: str | None, factory: ServerPerMessageDeflateFactory | None
) -> tuple[bytes | None, list[Extension]]:
    """The Sec-WebSocket-Extensions answer and the extensions in use. Only
    permessage-deflate is known; the first acceptable offer of it wins (RFC 7692 §5:
    the client lists its offers in order of preference; unusable ones are skipped)."""
    if offer is None or factory is None:
        return None, []
    try:
        items = parse_extension(offer)
    except InvalidHeader:
        raise HandshakeRefused(400, "invalid Sec-WebSocket-Extensions") from None
    for name, params in items:
        if name != factory.name:
            continue
        try:
            response_params, extension = factory.process_request_params(params, [])
        except NegotiationError:
            continue
        return build_extension([(name, response_params)]).encode("latin-1"), [extension]
    return None, []


def accept_head(
    key: bytes,
    subprotocol: str | None,
    extensions: bytes | None,
    headers: list[tuple[bytes, bytes]],
    extra: bytes,
) -> bytes:
    """The `101 Switching Protocols` head, with the app's headers, then `extra` (the server's
    Date/Server block). Raises ValueError for an app header with CR, LF or NUL in it."""
    lines = [
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n",
        b"sec-websocket-accept: " + accept_key(key) + b"\r\n",
    ]
    if subprotocol is not None:
        lines.append(b"sec-websocket-protocol: " + subprotocol.encode("latin-1") + b"\r\n")
    if extensions is not None:
        lines.append(b"sec-websocket-extensions: " + extensions + b"\r\n")
    for name, value in headers:
        lines.append(bytes(name) + b": " + bytes(value) + b"\r\n")
    block = b"".join(lines)
    if block.count(b"\n") != block.count(b"\r\n") or block.count(b"\r") != block.count(b"\n"):
        raise ValueError("WebSocket accept header contains CR or LF")
    if block.find(b"\0") != -1:
        raise ValueError("WebSocket accept header contains NUL")
    return block + extra + b"\r\n"
