"""An HTTP/2 request's header list to a request head and an ASGI `http` scope.

The engine's own inbound header validation is off (an eighth of the instructions
of a small request, a generator pipeline of seven passes); the same checks are
made here, in the one pass that builds the request:

  field syntax (RFC 9113 §8.2.1): names are lowercase tokens without CTLs,
  spaces, non-ASCII or (past the first byte) colons; values hold no NUL, CR or
  LF and do not start or end with SP/HTAB
  connection-specific fields (§8.2.2): none, and `te` only as "trailers"
  pseudo-headers (§8.3): known ones, once each, before every regular field;
  :method, :scheme and :path (not empty) unless CONNECT, which has neither
  :scheme nor :path; no :status; :protocol only with CONNECT
  :authority and Host (§8.3.1): at least one; equal when both; Host once

A fault there raises `MalformedHeaders`, a connection error as the engine's was
(GOAWAY PROTOCOL_ERROR). Content-Length (digits only, repeated only with the
same value, the body's length) is still checked by the engine. A well-formed
request the server does not serve (CONNECT, a :path that is not origin-form)
raises a plain ValueError: that stream alone is reset. Cookie crumbs are joined
back together (§8.2.3) and :authority becomes the Host.
"""

from __future__ import annotations

import re
from typing import Any

from steadyloop.asgi.scope import ASGI_VERSION, EXTENSIONS, SPEC_VERSION, decode_path, split_target
from steadyloop.http.errors import ProtocolError
from steadyloop.http.parser import RequestHead
from steadyloop.protocols.shared import ServerState

_ASGI = {"version": ASGI_VERSION, "spec_version": SPEC_VERSION}
H2_EXTENSIONS: dict[str, dict[str, Any]] = {**EXTENSIONS, "http.response.trailers": {}}

# "A field name MUST NOT contain characters in the ranges 0x00-0x20, 0x41-0x5a, or
# 0x7f-0xff" and, pseudo-headers aside, "MUST NOT include a colon" -- RFC 9113 §8.2.1
_name_ok = re.compile(rb"[\x21-\x39\x3b-\x40\x5b-\x7e]+").fullmatch
# HTTP/1.1 connection-specific fields mean nothing in HTTP/2: "An endpoint MUST NOT
# generate an HTTP/2 message containing connection-specific header fields" -- RFC 9113
# §8.2.2; a request carrying one is malformed, and the stream drops them from responses.
CONNECTION_FIELDS = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)
_WHITESPACE = b" \t"
# Values that passed `_check_value` (a client repeats its User-Agent, Accept, :path...);
# a pure function of the value, so shared by all connections. Bounded: short values only,
# cleared when full (at most 4096 x 256 bytes).
_good_values: set[bytes] = set()
_GOOD_VALUES_LIMIT = 4096
_GOOD_VALUE_SIZE = 256


class MalformedHeaders(ValueError):
    """A header block that breaks HTTP/2's field rules: a connection error."""


def _check_value(name: bytes, value: bytes) -> None:
    """ "A field value MUST NOT contain the zero value (ASCII NUL, 0x00), line feed (ASCII LF,
    0x0a), or carriage return (ASCII CR, 0x0d) at any position. A field value MUST NOT start
    or end with an ASCII whitespace character (ASCII SP or HTAB, 0x20 or 0x09)." -- §8.2.1"""
    if len(value.translate(None, b"\0\r\n")) != len(value):
        raise MalformedHeaders(f"NUL, CR or LF in the value of {name!r}")
    if value[0] in _WHITESPACE or value[-1] in _WHITESPACE:
        raise MalformedHeaders(f"whitespace around the value of {name!r}")
    if len(value) <= _GOOD_VALUE_SIZE:
        if len(_good_values) >= _GOOD_VALUES_LIMIT:
            _good_values.clear()
        _good_values.add(value)


def _check_name(name: bytes) -> None:
    if name in CONNECTION_FIELDS:
        raise MalformedHeaders(f"connection-specific field {name!r}")
    if not _name_ok(name):
        raise MalformedHeaders(f"invalid field name {name!r}")


def check_trailers(fields: list[tuple[bytes, bytes]]) -> None:
    """A request's trailers: regular fields only, by the same rules."""
    for name, value in fields:
        if name[:1] == b":":
            raise MalformedHeaders(f"pseudo-header {name!r} in trailers")
        _check_name(name)
        if value:
            _check_value(name, value)
        if name == b"te" and value.lower() != b"trailers":
            raise MalformedHeaders("te other than trailers")


def build_request(fields: list[tuple[bytes, bytes]]) -> RequestHead:
    """A RequestHead (http_version "2") from a decoded header list. MalformedHeaders: the
    header block breaks HTTP/2's rules; ValueError: a request this server does not serve."""
    method = scheme = path = authority = host = protocol = None
    regular = False  # a regular field seen: no pseudo-header may follow
    headers: list[tuple[bytes, bytes]] = []
    cookies: list[bytes] = []
    content_length = 0
    expect_continue = forwarded = False
    good = _good_values
    for name, value in fields:
        if value and value not in good:
            _check_value(name, value)
        if name[:1] == b":":
            if regular:
                raise MalformedHeaders(f"pseudo-header {name!r} after a regular field")
            if name == b":method":
                if method is not None:
                    raise MalformedHeaders("duplicate :method")
                method = value
            elif name == b":path":
                if path is not None:
                    raise MalformedHeaders("duplicate :path")
                path = value
            elif name == b":scheme":
                if scheme is not None:
                    raise MalformedHeaders("duplicate :scheme")
                scheme = value  # the client's view; the connection knows the real one
            elif name == b":authority":
                if authority is not None:
                    raise MalformedHeaders("duplicate :authority")
                authority = value
            elif name == b":protocol":
                if protocol is not None:
                    raise MalformedHeaders("duplicate :protocol")
                protocol = value
            else:  # :status is a response's, the rest unknown
                raise MalformedHeaders(f"pseudo-header {name!r} in a request")
            continue
        regular = True
        if name == b"cookie":
            cookies.append(value)
            continue
        if name == b"host":
            if host is not None:
                raise MalformedHeaders("more than one host field")
            host = value
        elif name == b"content-length":
            try:
                content_length = int(value)
            except ValueError:
                raise ValueError("invalid content-length") from None
        elif name == b"expect":
            if value.lower() == b"100-continue":
                expect_continue = True
        elif name == b"x-forwarded-for" or name == b"x-forwarded-proto":
            forwarded = True
        elif name == b"te":
            if value.lower() != b"trailers":
                raise MalformedHeaders("te other than trailers")
        else:
            _check_name(name)
        headers.append((name, value))
    if method is None:
        raise MalformedHeaders("request without :method")
    if method == b"CONNECT" and protocol is None:
        if scheme is not None or path is not None:
            raise MalformedHeaders("CONNECT with :scheme or :path")
    else:
        if scheme is None or path is None:
            raise MalformedHeaders("request without :scheme or :path")
        if not path:
            raise MalformedHeaders("empty :path")
        if protocol is not None and method != b"CONNECT":
            raise MalformedHeaders(":protocol without CONNECT")
    if authority is None:
        if host is None:
            raise MalformedHeaders("request without :authority or host")
    elif host is not None and host != authority:
        raise MalformedHeaders(":authority and host differ")
    if method == b"CONNECT":
        raise ValueError("CONNECT is not served")
    # ":path ... MUST NOT be empty" -- RFC 9113 §8.3.1 (OPTIONS may use "*")
    if not (path[:1] == b"/" or (path == b"*" and method == b"OPTIONS")):  # type: ignore[index]
        raise ValueError("invalid :path")
    if authority is not None and host is None:
        # ASGI apps (and HTTP/1.1 habits) look for Host; HTTP/2 carries it as :authority.
        headers.insert(0, (b"host", authority))
    if cookies:
        # "these MUST be concatenated into a single octet string using the two-octet
        # delimiter of 0x3b, 0x20 (the ASCII string "; ")" -- RFC 9113 §8.2.3
        headers.append((b"cookie", b"; ".join(cookies)))
    return RequestHead(
        method.decode("ascii"),
        path,  # type: ignore[arg-type]
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
