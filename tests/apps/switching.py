"""Small apps for the switching tests: what a deployment hands an app, answered back."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from typing import Any
from urllib.parse import parse_qs

from apps.basic import lifespan_ok, read_body, respond


async def environment(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """GET /?name=X answers the value of the environment variable X (or null)."""
    if scope["type"] == "lifespan":
        await lifespan_ok(receive, send)
        return
    await read_body(receive)
    name = parse_qs(scope["query_string"].decode())["name"][0]
    await respond(send, 200, json.dumps(os.environ.get(name)).encode())


async def blocks_outside_the_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Blocks the loop for 0.4 s from a callback, so that no frame of the app is on the stack."""
    if scope["type"] == "lifespan":
        await lifespan_ok(receive, send)
        return
    await read_body(receive)
    asyncio.get_running_loop().call_soon(time.sleep, 0.4)
    await respond(send, 200, b"scheduled")


async def blocking(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """GET /block?ms=N holds the event loop for N ms (time.sleep, on purpose); / answers at once."""
    if scope["type"] == "lifespan":
        await lifespan_ok(receive, send)
        return
    await read_body(receive)
    if scope["path"] == "/block":
        time.sleep(int(parse_qs(scope["query_string"].decode())["ms"][0]) / 1000)
    await respond(send, 200, b"ok")


async def behind_proxy(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """For the nginx tests.

    GET  /whoami       the client and scheme the app sees, as JSON
    WS   /echo         a WebSocket echoing text messages
    POST /upload       the body's length and sha256, as JSON
    GET  /stream?gate=PATH
                       "first\\n" at once; "second\\n" only once the file PATH exists
                       (the client creates it when "first" has reached it)
    """
    if scope["type"] == "lifespan":
        await lifespan_ok(receive, send)
        return
    if scope["type"] == "websocket":  # /echo: every text message back, then the close
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message["text"]})
        return
    path = scope["path"]
    if path == "/upload":
        digest, size, more = hashlib.sha256(), 0, True
        while more:
            message = await receive()
            chunk = message.get("body", b"")
            digest.update(chunk)
            size += len(chunk)
            more = message.get("more_body", False)
        await respond(send, 200, json.dumps({"bytes": size, "sha256": digest.hexdigest()}).encode())
        return
    await read_body(receive)
    if path == "/stream":
        gate = parse_qs(scope["query_string"].decode())["gate"][0]
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"first\n", "more_body": True})
        for _ in range(1000):  # up to 10 s: a buffering proxy would hold "first" until the end
            if os.path.exists(gate):
                break
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"second\n"})
        return
    seen = {"client": scope["client"], "scheme": scope["scheme"], "root_path": scope["root_path"]}
    await respond(send, 200, json.dumps(seen).encode(), [(b"content-type", b"application/json")])
