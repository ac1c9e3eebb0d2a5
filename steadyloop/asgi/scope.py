"""Turning a parsed request head into an ASGI `http` scope."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from steadyloop.http.errors import ProtocolError
from steadyloop.http.parser import RequestHead

ASGI_VERSION = "3.0"
# 2.4: `send` raises OSError once the client is gone, so apps need not poll `receive`.
SPEC_VERSION = "2.4"
EXTENSIONS: dict[str, dict[str, Any]] = {"http.response.pathsend": {}}


def split_target(head: RequestHead) -> tuple[bytes, bytes]:
    """(raw path, query string) of a request-target -- RFC 9112 §3.2."""
    target = head.target
    if target[:1] == b"/":  # origin-form, by far the most common
        raw_path, _, query = target.partition(b"?")
    elif target == b"*" and head.method == "OPTIONS":  # asterisk-form
        return b"*", b""
    elif target[:7].lower() == b"http://" or target[:8].lower() == b"https://":  # absolute-form
        rest = target.split(b"://", 1)[1]
        slash = rest.find(b"/")
        if slash == -1:
            raw_path, query = b"/", b""
            question = rest.find(b"?")
            if question != -1:
                query = rest[question + 1 :]
        else:
            raw_path, _, query = rest[slash:].partition(b"?")
    else:
        raise ProtocolError(400, "invalid request target")
    hash_at = raw_path.find(b"#")
    if hash_at != -1:
        raw_path = raw_path[:hash_at]
    return raw_path, query


def decode_path(raw_path: bytes) -> str:
    """Percent-decoded, UTF-8-decoded path; 400 for bytes that are not UTF-8."""
    try:
        if raw_path.find(b"%") != -1:
            return unquote_to_bytes(raw_path).decode("utf-8")
        return raw_path.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(400, "request path is not valid UTF-8") from None
