"""A tiny ASGI app for the supervisor tests: who served me, slow requests, a stuck loop.

GET /            the worker's pid, as text
GET /slow?s=0.5  waits (asyncio.sleep) then answers with the pid
GET /stuck       blocks the event loop forever with time.sleep (for --worker-timeout)
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/slow":
        seconds = float(parse_qs(scope["query_string"].decode()).get("s", ["0.5"])[0])
        # A line the test waits for: the request is in flight in this worker.
        print(f"slow request started in {os.getpid()}", file=sys.stderr, flush=True)
        await asyncio.sleep(seconds)
    elif path == "/stuck":
        stuck_forever()
    body = str(os.getpid()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def stuck_forever() -> None:
    while True:
        time.sleep(1)  # blocks the event loop: the heartbeat stops
