"""WebSocket (RFC 6455) behind the connection interface, entered by an HTTP/1.1 upgrade.

upgrade(...)                 called by Http1Connection for `Upgrade: websocket`
handshake.py                 the opening handshake, pure
connection.py                WebSocketConnection: one session, frames <-> ASGI messages
"""

from __future__ import annotations

import asyncio
from typing import Any

from steadyloop.asgi.cycle import request_id_for
from steadyloop.http.parser import RequestHead
from steadyloop.protocols.shared import ServerState
from steadyloop.protocols.websocket.connection import WebSocketConnection
from steadyloop.protocols.websocket.handshake import (
    HandshakeRefused,
    check_request,
    deflate_factory,
    is_websocket_upgrade,
    negotiate_extensions,
)

# Advertised in every websocket scope: the app may answer the handshake with its own HTTP
# response (websocket.http.response.start / .body) instead of accepting.
EXTENSIONS: dict[str, dict[str, Any]] = {"websocket.http.response": {}}

__all__ = ["HandshakeRefused", "is_websocket_upgrade", "upgrade"]


def upgrade(
    state: ServerState,
    transport: asyncio.Transport,
    head: RequestHead,
    http_scope: dict[str, Any],
    peer: tuple[str, int] | None,
    early: bytes,
    read_paused: bool,
    write_paused: bool,
) -> None:
    """Take the connection over from HTTP/1.1 and start the app's websocket session.
    Raises HandshakeRefused (before touching anything) for an invalid handshake request."""
    offer = check_request(head)
    factory = deflate_factory() if state.config.websocket.per_message_deflate else None
    extensions = negotiate_extensions(offer.extensions, factory)
    scope = dict(http_scope)
    del scope["method"]
    scope["type"] = "websocket"
    scope["scheme"] = "wss" if http_scope["scheme"] in ("https", "wss") else "ws"
    scope["subprotocols"] = offer.subprotocols
    scope["extensions"] = EXTENSIONS
    connection = WebSocketConnection(
        state,
        transport,
        head,
        scope,
        offer.key,
        extensions,
        request_id_for(head.headers),
        peer,
    )
    connection.start(early, read_paused, write_paused)
