"""An app that logs with the standard library and configures nothing (as many do)."""

from __future__ import annotations

import logging
from typing import Any

from apps.basic import lifespan_ok, read_body, respond

log = logging.getLogger("shop.payments")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan_ok(receive, send)
        return
    await read_body(receive)
    log.warning("card declined")
    await respond(send, 200, b"logged")
