"""Apps that report the process's GC thresholds (the server raises the young one at start)."""

from __future__ import annotations

import gc
import json
from typing import Any


async def thresholds(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = json.dumps(gc.get_threshold()).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": body})


def tuned_by_the_app() -> Any:
    """A factory: the app sets its own thresholds while it is created, as some apps do."""
    gc.set_threshold(1234, 5, 5)
    return thresholds
