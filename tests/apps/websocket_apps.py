"""WebSocket apps for the real-socket tests: a raw ASGI app with one route per behaviour,
FastAPI and Starlette endpoints, and a Django Channels consumer.

    steadyloop tests.apps.websocket_apps:app          the raw app (subprocess tests use it)
"""

from __future__ import annotations

import json
import time
from typing import Any

# Disconnect messages the raw app heard, in order (in-process tests read it).
DISCONNECTS: list[dict[str, Any]] = []


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] == "http":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"http " + scope["path"].encode()})
        return
    assert (await receive())["type"] == "websocket.connect"
    path = scope["path"]
    if path == "/refuse":
        await send({"type": "websocket.close"})
        return
    if path == "/deny":
        await send({"type": "websocket.http.response.start", "status": 401, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"who are you?"})
        return
    if path == "/fail":
        raise RuntimeError("failing before accept, on purpose")
    protocols = scope["subprotocols"]
    await send(
        {
            "type": "websocket.accept",
            "subprotocol": protocols[0] if protocols else None,
            "headers": [(b"x-session", b"yes")],
        }
    )
    if path == "/scope":
        shown = {k: v for k, v in scope.items() if k not in ("headers", "state", "raw_path", "query_string")}
        shown["query_string"] = scope["query_string"].decode()
        await send({"type": "websocket.send", "text": json.dumps(shown)})
    elif path == "/fail-after":
        raise RuntimeError("failing after accept, on purpose")
    elif path == "/close":
        await send({"type": "websocket.close", "code": 4000, "reason": "app says bye"})
    elif path == "/block":
        time.sleep(0.4)  # blocks the loop: the watchdog must name this handler
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            DISCONNECTS.append(message)
            return
        if path in ("/echo", "/block"):
            await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})


# -- FastAPI and Starlette ------------------------------------------------------------------------

from fastapi import FastAPI, WebSocket  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.routing import WebSocketRoute  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

fastapi_app = FastAPI()


@fastapi_app.websocket("/ws/{room}")
async def fastapi_room(websocket: WebSocket, room: str) -> None:
    await websocket.accept()
    try:
        while True:
            data = await websocket.receive_json()
            await websocket.send_json({"room": room, "got": data})
    except WebSocketDisconnect as exc:
        DISCONNECTS.append({"framework": "fastapi", "code": exc.code})


async def starlette_echo(websocket: Any) -> None:
    await websocket.accept(subprotocol="v1")
    async for text in websocket.iter_text():
        await websocket.send_text(text.upper())


starlette_app = Starlette(routes=[WebSocketRoute("/ws", starlette_echo)])


# -- Django Channels ------------------------------------------------------------------------------


def channels_app() -> Any:
    """A Channels consumer behind Channels' router, Django configured in-process."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="test",
            ALLOWED_HOSTS=["*"],
            INSTALLED_APPS=["channels"],
            CHANNEL_LAYERS={},
        )
        django.setup()
    from channels.generic.websocket import AsyncJsonWebsocketConsumer
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.urls import path

    class Counter(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
        async def connect(self) -> None:
            self.count = 0
            await self.accept()

        async def receive_json(self, content: Any, **kwargs: Any) -> None:
            self.count += content["add"]
            await self.send_json({"count": self.count, "user": self.scope["url_route"]["kwargs"]["user"]})

    return ProtocolTypeRouter({"websocket": URLRouter([path("count/<str:user>", Counter.as_asgi())])})
