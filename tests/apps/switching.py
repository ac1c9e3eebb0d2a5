"""Small apps for the switching tests: what a deployment hands an app, answered back."""

from __future__ import annotations

import asyncio
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
