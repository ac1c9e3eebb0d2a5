"""An ASGI app that makes known traffic for the metrics tests.

GET /            200
GET /missing     404
GET /boom        the app raises: the server answers 500
GET /block?s=S   blocks the event loop for S seconds at BLOCK_LINE (time.sleep on the loop)
GET /pool        two jobs on the default executor at once: with --threads 1 one waits
GET /log?n=N     N log lines through a handler on stdout (a pipe the test never reads)
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]

app_log = logging.getLogger("metrics_app")
app_log.setLevel(logging.INFO)
app_log.addHandler(logging.StreamHandler(sys.stdout))
app_log.propagate = False


def hold_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # BLOCK_LINE: the line the watchdog must name


BLOCK_LINE = hold_the_loop.__code__.co_firstlineno + 1


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
    query = parse_qs(scope["query_string"].decode())
    status = 200
    if path == "/missing":
        status = 404
    elif path == "/boom":
        raise RuntimeError("boom, as asked")
    elif path == "/block":
        hold_the_loop(float(query.get("s", ["0.3"])[0]))
    elif path == "/pool":
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(None, time.sleep, 0.3) for _ in range(2)))
    elif path == "/log":
        for i in range(int(query.get("n", ["1000"])[0])):
            app_log.info("line %d of a log that nobody reads %s", i, "x" * 200)
    body = b"ok\n"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
