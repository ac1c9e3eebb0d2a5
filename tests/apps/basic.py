"""Small ASGI apps for the server tests (importable as `apps.basic` by subprocesses)."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any
from urllib.parse import parse_qs


async def read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client went away")
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body


async def respond(
    send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": body})


def describe_scope(scope: dict[str, Any], body: bytes) -> dict[str, Any]:
    return {
        "type": scope["type"],
        "asgi": scope["asgi"],
        "http_version": scope["http_version"],
        "method": scope["method"],
        "scheme": scope["scheme"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode("latin-1"),
        "query_string": scope["query_string"].decode("latin-1"),
        "root_path": scope["root_path"],
        "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
        "header_types": sorted({type(n).__name__ for n, _ in scope["headers"]}),
        "client": list(scope["client"]) if scope.get("client") else None,
        "server": list(scope["server"]) if scope.get("server") else None,
        "state": sorted(scope.get("state", {})),
        "extensions": sorted(scope.get("extensions") or {}),
        "body": body.decode("latin-1"),
    }


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body; answers JSON describing the request. /slow?ms=N waits first."""
    if scope["type"] == "lifespan":
        await lifespan_ok(receive, send)
        return
    body = await read_body(receive)
    query = parse_qs(scope["query_string"].decode())
    if "ms" in query:
        await asyncio.sleep(int(query["ms"][0]) / 1000)
    payload = json.dumps(describe_scope(scope, body)).encode()
    await respond(send, 200, payload, [(b"content-type", b"application/json")])


async def lifespan_ok(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def with_state(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Lifespan puts a value in `state`; requests read it back. Shutdown writes a marker file."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["greeting"] = "hello from lifespan"
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                marker = os.environ.get("SHUTDOWN_MARKER")
                if marker:
                    with open(marker, "w") as file:
                        file.write("shutdown ran")
                await send({"type": "lifespan.shutdown.complete"})
                return
    await read_body(receive)
    await respond(send, 200, scope["state"]["greeting"].encode())


async def failing_startup(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database is unreachable (test)"})
        return
    await respond(send, 500, b"should never serve")


class Asgi2App:
    """An ASGI 2 ("double callable") app."""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        if self.scope["type"] == "lifespan":
            await lifespan_ok(receive, send)
            return
        await respond(send, 200, b"asgi2 " + self.scope["path"].encode())


def make_app() -> Any:
    """An app factory (for --factory)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan_ok(receive, send)
            return
        await respond(send, 200, b"made by factory")

    return app


async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers after `?ms=N` milliseconds (default 300); for shutdown-under-load tests."""
    if scope["type"] == "lifespan":
        await lifespan_ok(receive, send)
        return
    await read_body(receive)
    started_log = os.environ.get("STARTED_LOG")
    if started_log:  # lets a test wait until every request is inside the app
        with open(started_log, "a") as file:
            file.write(scope["path"] + "\n")
    query = parse_qs(scope["query_string"].decode())
    await asyncio.sleep(int(query.get("ms", ["300"])[0]) / 1000)
    await respond(send, 200, b"done " + scope["path"].encode())


async def stream_forever(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Streams 64 KiB chunks until the client goes away; then says what it heard."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    try:
        while True:
            await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
    except OSError:
        message = await receive()
        print(f"stream_forever: send raised; receive gave {message['type']}", flush=True)
