"""Choosing the event loop: uvloop (libuv, epoll) by default, stdlib asyncio as fallback."""

from __future__ import annotations

import asyncio

from steadyloop.config import ConfigError


def new_event_loop(choice: str) -> asyncio.AbstractEventLoop:
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise ConfigError("--loop uvloop: uvloop is not installed") from None
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()
