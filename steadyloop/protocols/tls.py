"""A TLS port's first bytes, and what a TLS connection tells the app.

`TlsGate` is the protocol of every new connection on a TLS port. It reads the
first bytes in the clear: a TLS handshake (a ClientHello record starts with
0x16) is handed to the loop's own TLS protocol, which then runs the
handshake (cut after --timeout-header-read) and starts the HTTP connection;
anything else is a client speaking plain HTTP to a TLS port, which gets a
400 that says so (nginx answers the same case with its 497) instead of a
handshake failure it cannot read.

`tls_extension` is the ASGI `tls` scope extension, given to apps when client
certificates are asked for (mutual TLS).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from asyncio.sslproto import SSLProtocol as _AsyncioSSLProtocol
from collections.abc import Callable
from typing import Any

from steadyloop.protocols.shared import ServerState

logger = logging.getLogger("steadyloop.error")


def _uvloop_ssl_protocol() -> Any:
    """uvloop's TLS protocol (compiled; the stdlib's is the same design in Python). Not in
    uvloop's stubs, hence looked up by name."""
    try:
        import uvloop.loop
    except ImportError:  # pragma: no cover - uvloop is installed wherever it builds
        return None
    return getattr(uvloop.loop, "SSLProtocol", None)


_UVSSLProtocol = _uvloop_ssl_protocol()

_TLS_RECORD_HANDSHAKE = 0x16  # RFC 8446 §5.1: ContentType handshake(22)
_PLAIN_HTTP_ANSWER = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
    b"content-length: 61\r\n\r\n"
    b"This port speaks TLS: send the request with https:// instead\n"
)


class TlsGate(asyncio.Protocol):
    """A connection on a TLS port until its first bytes say what the client speaks."""

    def __init__(
        self, state: ServerState, context: ssl.SSLContext, app_protocol: Callable[[], asyncio.BaseProtocol]
    ) -> None:
        self.state = state
        self.context = context
        self.app_protocol = app_protocol
        self.transport: asyncio.Transport | None = None
        self.since = state.now
        self.closing = False  # the Connection interface: a gate never starts a request

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.state.connections.add(self)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        self._leave()
        if data[0] != _TLS_RECORD_HANDSHAKE:
            self._plain_http(transport, data)
            return
        state = self.state
        loop = state.loop
        proto_class: Any = _UVSSLProtocol if _is_uvloop(loop) else _AsyncioSSLProtocol
        tls = proto_class(
            loop,
            self.app_protocol(),
            self.context,
            None,
            True,  # server side
            None,
            True,
            state.config.timeouts.header_read,  # a handshake that stalls is cut like a slow head
        )
        transport.set_protocol(tls)
        tls.connection_made(transport)
        # The bytes already read go to the TLS protocol as if it had read them itself.
        view = memoryview(data)
        while view:
            buffer = tls.get_buffer(len(view))
            size = min(len(buffer), len(view))
            buffer[:size] = view[:size]
            tls.buffer_updated(size)
            view = view[size:]

    def _plain_http(self, transport: asyncio.Transport, data: bytes) -> None:
        peer = transport.get_extra_info("peername")
        if data[:1].isalpha():  # a request line: a method is letters
            logger.info("plain HTTP on a TLS port from %s: answered 400 (this port speaks TLS)", _peer(peer))
            transport.write(_PLAIN_HTTP_ANSWER)
            transport.close()
        else:
            logger.info("neither TLS nor HTTP from %s on a TLS port: closed", _peer(peer))
            transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._leave()

    def _leave(self) -> None:
        state = self.state
        if self in state.connections:
            state.connections.discard(self)
            state.check_idle()

    # -- the connection interface (steadyloop.protocols.base.Connection) ---------------------

    def is_idle(self) -> bool:
        return True

    def shutdown(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def check_timeouts(self, now: float) -> None:
        # Connected and silent: the handshake has not even begun.
        if now - self.since >= self.state.config.timeouts.header_read and self.transport is not None:
            self.transport.abort()


def _is_uvloop(loop: asyncio.AbstractEventLoop) -> bool:
    return _UVSSLProtocol is not None and type(loop).__module__.startswith("uvloop")


def _peer(peer: Any) -> str:
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "unix socket"


# -- the ASGI tls extension ---------------------------------------------------------------------

_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
_cipher_ids: dict[str, int] = {}


def tls_extension(ssl_object: ssl.SSLObject) -> dict[str, Any]:
    """The `tls` extension of the ASGI spec: the client's certificate (PEM), TLS version
    and cipher suite (IANA numbers) of this connection."""
    der = ssl_object.getpeercert(binary_form=True)
    chain = [ssl.DER_cert_to_PEM_cert(der)] if der else []
    cipher = ssl_object.cipher()
    name = cipher[0] if cipher else ""
    if name and name not in _cipher_ids:
        for entry in ssl_object.context.get_ciphers():
            _cipher_ids[entry["name"]] = entry["id"] & 0xFFFF  # OpenSSL keeps the IANA id low
    return {
        "server_cert": None,
        "client_cert_chain": chain,
        "client_cert_name": _subject(ssl_object.getpeercert()) if der else None,
        "client_cert_error": None,  # a certificate that failed verification ends the handshake
        "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": _cipher_ids.get(name),
    }


def _subject(cert: Any) -> str | None:
    """The subject as an RFC 4514 string ("CN=client,O=Example"), most specific first."""
    if not cert or "subject" not in cert:
        return None
    short = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C"}
    pairs = [(short.get(key, key), value) for rdn in cert["subject"] for key, value in rdn]
    return ",".join(f"{key}={value}" for key, value in reversed(pairs))
