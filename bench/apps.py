"""The apps every benchmarked server serves, so that only the server differs.

The raw ASGI and WSGI apps do the least work an app can do (a fixed body with
a Content-Length), so what is measured is the server's own cost per request.
The FastAPI app is built lazily (module `__getattr__`): servers serving the
raw apps never import FastAPI, so its import cost and its objects do not
weigh on them.

Targets (`bench.apps:NAME`):
  hello        raw ASGI, 13-byte text body
  ten_kb       raw ASGI, 10 KiB body
  fastapi_app  FastAPI, `GET /json` returning a small JSON object
  wsgi_hello   WSGI, 13-byte text body
  wsgi_ten_kb  WSGI, 10 KiB body
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
StartResponse = Callable[..., Any]

HELLO_BODY = b"Hello, world!"
TEN_KB_BODY = b"x" * 10240
JSON_PAYLOAD: dict[str, Any] = {"message": "Hello, world!", "id": 42, "tags": ["a", "b", "c"]}


async def _lifespan(receive: Receive, send: Send) -> None:
    # Answer lifespan properly so that no server logs a lifespan warning or
    # takes a slower fallback path for an app that "does not support" it.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _fixed_body_app(body: bytes, content_type: bytes) -> ASGIApp:
    # Headers and body are built once: the app's per-request cost stays
    # constant and tiny, whatever server runs it.
    start: Message = {
        "type": "http.response.start",
        "status": 200,
        "headers": [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode("ascii")),
        ],
    }
    body_message: Message = {"type": "http.response.body", "body": body}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        await send(start)
        await send(body_message)

    return app


hello = _fixed_body_app(HELLO_BODY, b"text/plain")
ten_kb = _fixed_body_app(TEN_KB_BODY, b"application/octet-stream")


async def ws_echo(scope: Scope, receive: Receive, send: Send) -> None:
    """WebSocket echo; a plain GET gets the hello body (the harness's readiness check)."""
    kind = scope["type"]
    if kind == "lifespan":
        await _lifespan(receive, send)
    elif kind == "http":
        await hello(scope, receive, send)
    else:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})


def _fixed_body_wsgi(body: bytes, content_type: str) -> Callable[..., Iterable[bytes]]:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", list(headers))  # a copy: servers may append to it
        return [body]

    return app


wsgi_hello = _fixed_body_wsgi(HELLO_BODY, "text/plain")
wsgi_ten_kb = _fixed_body_wsgi(TEN_KB_BODY, "application/octet-stream")


@functools.cache
def _build_fastapi_app() -> Any:
    from fastapi import FastAPI

    api = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @api.get("/json")
    async def json_endpoint() -> dict[str, Any]:
        return JSON_PAYLOAD

    return api


def __getattr__(name: str) -> Any:
    if name == "fastapi_app":
        return _build_fastapi_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
