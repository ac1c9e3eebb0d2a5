"""An HTTP/2 request's header list to a request head and an ASGI `http` scope.

The engine has checked the field syntax already (no uppercase names, no
connection-specific fields, pseudo-headers first and known); what is left
here is the request's meaning: RFC 9113 §8.3.1's required pseudo-headers,
`:authority` as the Host, and cookie crumbs joined back together.
"""

from __future__ import annotations

from typing import Any

from steadyloop.asgi.scope import ASGI_VERSION, EXTENSIONS, SPEC_VERSION, decode_path, split_target
from steadyloop.http.errors import ProtocolError
from steadyloop.http.parser import RequestHead
from steadyloop.protocols.shared import ServerState

_ASGI = {"version": ASGI_VERSION, "spec_version": SPEC_VERSION}
H2_EXTENSIONS: dict[str, dict[str, Any]] = {**EXTENSIONS, "http.response.trailers": {}}


def build_request(fields: list[tuple[bytes, bytes]]) -> RequestHead:
    """A RequestHead (http_version "2") from a decoded header list; ValueError: malformed."""
    method = path = authority = None
    headers: list[tuple[bytes, bytes]] = []
    cookies: list[bytes] = []
    content_length = 0
    expect_continue = forwarded = False
    has_host = False
    for name, value in fields:
        if name[:1] == b":":
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name == b":authority":
                authority = value
            continue  # :scheme is the client's view; the connection knows the real one
        if name == b"cookie":
            cookies.append(value)
            continue
        if name == b"host":
            has_host = True
        elif name == b"content-length":
            try:
                content_length = int(value)
            except ValueError:
                raise ValueError("invalid content-length") from None
        elif name == b"expect" and value.lower() == b"100-continue":
            expect_continue = True
        elif name == b"x-forwarded-for" or name == b"x-forwarded-proto":
            forwarded = True
        headers.append((name, value))
    if method is None:
        raise ValueError("request without :method")
    if method == b"CONNECT":
        raise ValueError("CONNECT is not served")
    # ":path ... MUST NOT be empty" -- RFC 9113 §8.3.1 (OPTIONS may use "*")
    if not path or not (path[:1] == b"/" or (path == b"*" and method == b"OPTIONS")):
        raise ValueError("missing or invalid :path")
    if authority is not None and not has_host:
        # ASGI apps (and HTTP/1.1 habits) look for Host; HTTP/2 carries it as :authority.
        headers.insert(0, (b"host", authority))
    if cookies:
        # "these MUST be concatenated into a single octet string using the two-octet
        # delimiter of 0x3b, 0x20 (the ASCII string "; ")" -- RFC 9113 §8.2.3
        headers.append((b"cookie", b"; ".join(cookies)))
    return RequestHead(
        method.decode("ascii"),
        path,
        "2",
        headers,
        True,
        content_length,
        False,
        expect_continue,
        False,
        forwarded,
    )


def scope_for(
    head: RequestHead,
    state: ServerState,
    client: tuple[str, int] | None,
    server: tuple[str, int | None] | None,
    scheme: str,
    tls: dict[str, Any] | None,
) -> dict[str, Any]:
    try:
        raw_path, query = split_target(head)
        path = decode_path(raw_path)
    except ProtocolError as exc:
        raise ValueError(exc.reason) from None
    root_path = state.config.root_path
    if root_path:
        path = root_path + path
        raw_path = root_path.encode("utf-8") + raw_path
    return {
        "type": "http",
        "asgi": _ASGI,
        "http_version": "2",
        "server": server,
        "client": client,
        "scheme": scheme,
        "method": head.method,
        "root_path": root_path,
        "path": path,
        "raw_path": raw_path,
        "query_string": query,
        "headers": head.headers,
        "state": state.lifespan_state.copy(),
        "extensions": H2_EXTENSIONS if tls is None else {**H2_EXTENSIONS, "tls": tls},
    }
