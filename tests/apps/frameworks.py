"""Real framework apps: FastAPI, Starlette and Django (ASGI)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

# -- FastAPI --------------------------------------------------------------------------------------

fastapi_app = FastAPI()


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


@fastapi_app.get("/async")
async def fastapi_async() -> dict[str, str]:
    return {"message": "async", "thread": threading.current_thread().name}


@fastapi_app.get("/sync")
def fastapi_sync() -> dict[str, str]:
    return {"message": "sync", "thread": threading.current_thread().name}


@fastapi_app.get("/items/{item_id}")
async def fastapi_item(item_id: int, q: str | None = None) -> dict[str, Any]:
    return {"item_id": item_id, "q": q}


@fastapi_app.post("/items")
async def fastapi_create(item: Item) -> dict[str, Any]:
    return {"created": item.model_dump(), "total": item.price * 2}


@fastapi_app.get("/stream")
async def fastapi_stream() -> StreamingResponse:
    async def numbers() -> AsyncIterator[bytes]:
        for i in range(10):
            yield b"%d\n" % i
            await asyncio.sleep(0)

    return StreamingResponse(numbers(), media_type="text/plain")


@fastapi_app.post("/upload")
async def fastapi_upload(request: Request) -> dict[str, Any]:
    body = await request.body()
    digest = hashlib.sha256(body).hexdigest()
    return {"length": len(body), "sha256": digest, "http": request.scope["http_version"]}


# -- Starlette ------------------------------------------------------------------------------------


async def starlette_home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello from starlette")


async def starlette_echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse(
        {
            "path": request.url.path,
            "name": request.path_params["name"],
            "query": dict(request.query_params),
            "body": body.decode(),
            "client": request.client.host if request.client else None,
            "state": getattr(request.state, "started", None),
        }
    )


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    yield {"started": "yes"}


starlette_app = Starlette(
    routes=[Route("/", starlette_home), Route("/echo/{name}", starlette_echo, methods=["GET", "POST"])],
    lifespan=lifespan,
)
