"""Small apps for the switching tests: what a deployment hands an app, answered back."""

from __future__ import annotations

import json
import os
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
