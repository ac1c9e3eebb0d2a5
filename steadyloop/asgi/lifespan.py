"""The ASGI lifespan protocol: startup before serving, shutdown after.

With `--lifespan auto`, an app that raises before taking part (it does not
know the lifespan scope) is served without lifespan; with `on`, that is an
error. A failed startup is fatal and carries the app's message.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from steadyloop.asgi.scope import ASGI_VERSION, SPEC_VERSION
from steadyloop.asgi.types import ASGIApp, Message

logger = logging.getLogger("steadyloop.error")


class LifespanFailed(Exception):
    """Startup or shutdown failed; the message is the app's own."""


class Lifespan:
    def __init__(self, app: ASGIApp, mode: str, state: dict[str, Any]) -> None:
        self.app = app
        self.mode = mode  # "auto" | "on" | "off"
        self.state = state
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._startup_done = asyncio.Event()
        self._shutdown_done = asyncio.Event()
        self._error: str | None = None
        self._unsupported = False
        self._task: asyncio.Task[None] | None = None
        self._took_part = False

    async def startup(self) -> None:
        if self.mode == "off":
            return
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run())
        await self._inbox.put({"type": "lifespan.startup"})
        await self._startup_done.wait()
        if self._unsupported:
            return
        if self._error is not None:
            raise LifespanFailed(self._error)

    async def shutdown(self) -> None:
        if self._task is None or self._unsupported:
            return
        if self._task.done():
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        await self._shutdown_done.wait()
        if self._error is not None:
            raise LifespanFailed(self._error)

    async def _run(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": ASGI_VERSION, "spec_version": SPEC_VERSION},
            "state": self.state,
        }
        try:
            await self.app(scope, self._receive, self._send)
            if self._took_part and not self._startup_done.is_set():
                self._error = "the app returned without completing lifespan startup"
        except BaseException as exc:
            if not self._took_part and self.mode == "auto":
                self._unsupported = True
                logger.info("ASGI 'lifespan' not supported by the app (%s); serving without it", exc)
            else:
                self._error = f"{type(exc).__name__}: {exc}"
                logger.error("Exception in lifespan", exc_info=exc)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
        finally:
            self._startup_done.set()
            self._shutdown_done.set()

    async def _receive(self) -> Message:
        self._took_part = True
        return await self._inbox.get()

    async def _send(self, message: Message) -> None:
        self._took_part = True
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self._startup_done.set()
        elif kind == "lifespan.startup.failed":
            self._error = message.get("message") or "lifespan startup failed"
            self._startup_done.set()
        elif kind == "lifespan.shutdown.complete":
            self._shutdown_done.set()
        elif kind == "lifespan.shutdown.failed":
            self._error = message.get("message") or "lifespan shutdown failed"
            self._shutdown_done.set()
        else:
            raise RuntimeError(f"unexpected ASGI message type {kind!r} in lifespan")
