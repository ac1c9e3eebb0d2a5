"""FastAPI `def` endpoints on the thread pool (not a WSGI app: the other half of issue 6).

GET /slow      a plain `def` endpoint: Starlette runs it on anyio's thread pool; it
               holds its thread until /release is called (or 10 s pass)
GET /release   opens the gate (async: runs on the loop, needs no thread)
GET /stats     how many /slow ran at once, and the server's thread-pool counters
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import FastAPI

from steadyloop.observe.threadpool import snapshot_all

app = FastAPI()
gate = threading.Event()
_lock = threading.Lock()
running = 0
most = 0
done = 0


@app.get("/slow")
def slow() -> dict[str, int]:
    global running, most, done
    with _lock:
        running += 1
        most = max(most, running)
    try:
        gate.wait(10)
    finally:
        with _lock:
            running -= 1
            done += 1
    return {"ok": 1}


@app.get("/release")
async def release() -> dict[str, bool]:
    gate.set()
    return {"released": True}


@app.get("/stats")
async def stats() -> dict[str, Any]:
    return {"running": running, "most": most, "done": done, "pools": snapshot_all()}
