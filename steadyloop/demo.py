"""The built-in demo app: the "bad logging" seminar's three endpoints.

Served when `steadyloop` is started with no APP. It is a plain ASGI app (no
framework dependency) that behaves like the FastAPI original:

- `/async`: an `async def` handler that logs one line per request on the event loop;
- `/sync`: a plain `def` handler that logs, run on a pool thread (the loop's
  default executor, which is steadyloop's bounded thread pool), never on the loop;
- `/health`: answers at once; the probe that shows whether the loop is free.

The logger writes to stdout through an ordinary `StreamHandler`, exactly as an
app would set it up. Under steadyloop that handler is moved behind the
non-blocking log queue; under other servers the write happens where it is called.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
from typing import Any

logger = logging.getLogger("demo")
if not logger.handlers:
    _handler = logging.StreamHandler(sys.stdout)
    _handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def sync_endpoint() -> dict[str, str]:
    logger.info("Sync log: %d", random.randint(0, 100))
    return {"message": "Synchronous logging"}


async def async_endpoint() -> dict[str, str]:
    logger.info("Async log: %d", random.randint(0, 100))
    return {"message": "Asynchronous logging"}


_INDEX = {
    "app": "steadyloop demo",
    "endpoints": {
        "/async": "async def handler that logs on the event loop",
        "/sync": "def handler that logs on a pool thread",
        "/health": "answers at once",
    },
}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return

    path = scope["path"]
    status = 200
    payload: dict[str, Any]
    if path == "/async":
        payload = await async_endpoint()
    elif path == "/sync":
        payload = await asyncio.get_running_loop().run_in_executor(None, sync_endpoint)
    elif path == "/health":
        payload = {"status": "ok"}
    elif path == "/":
        payload = _INDEX
    else:
        status, payload = 404, {"detail": "Not Found"}

    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
