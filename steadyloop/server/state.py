"""What one worker's connections share: settings decided once, live counters, the clock."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from steadyloop.http.response import DateCache

if TYPE_CHECKING:
    from steadyloop.asgi.types import ASGIApp
    from steadyloop.config import Config
    from steadyloop.observe.access import AccessLog
    from steadyloop.observe.metrics.requests import RequestCounters
    from steadyloop.server.connection import HttpConnection


@dataclass(eq=False)
class ServerState:
    """Shared by every connection of one worker. Only the loop thread touches it."""

    config: Config
    app: ASGIApp
    loop: asyncio.AbstractEventLoop
    access_log: AccessLog | None = None
    lifespan_state: dict[str, Any] = field(default_factory=dict)
    connections: set[HttpConnection] = field(default_factory=set)
    tasks: int = 0  # app tasks running
    requests: int = 0  # responses completed
    shutting_down: bool = False
    # Coarse clock, advanced by the housekeeping timer; connections stamp it rather than
    # calling the clock on every request.
    now: float = field(default_factory=time.monotonic)
    date: DateCache = field(default_factory=DateCache)
    server_header_block: bytes = b""
    idle_waiter: asyncio.Future[None] | None = None
    # Called when the number of finished requests changes (max-requests recycling).
    on_request_done: Any = None
    metrics: RequestCounters | None = None  # --metrics: counted where a request ends

    def __post_init__(self) -> None:
        config = self.config
        block = b""
        if config.server_header:
            block += b"server: steadyloop\r\n"
        for name, value in config.headers:
            block += name.lower().encode("latin-1") + b": " + value.encode("latin-1") + b"\r\n"
        self.server_header_block = block
        # Awaiting a finished future returns at once, without a coroutine or a loop turn.
        self.done: asyncio.Future[None] = self.loop.create_future()
        self.done.set_result(None)
        self.head_extra_block = b""
        self.refresh_head_extra()
        # No task factory installed on the loop: request tasks can be built directly.
        self.plain_tasks = self.loop.get_task_factory() is None
        self._trusted = _TrustedProxies(config.forwarded_allow_ips)

    def refresh_head_extra(self) -> None:
        """Server-added response headers (Date, Server, --header) as one block, rebuilt by the
        housekeeping timer so that each response pays no clock call or concatenation."""
        self.date.refresh()
        if self.config.date_header:
            self.head_extra_block = self.date.value + self.server_header_block
        else:
            self.head_extra_block = self.server_header_block

    def trusts(self, host: str | None) -> bool:
        return self.config.proxy_headers and self._trusted.contains(host)

    def check_idle(self) -> None:
        """During shutdown, wake whoever waits for the last connection and task to end."""
        if self.shutting_down and not self.connections and self.tasks == 0:
            waiter = self.idle_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)


class _TrustedProxies:
    """--forwarded-allow-ips: addresses, networks, '*' for all, 'unix:' for socket peers."""

    def __init__(self, entries: tuple[str, ...]) -> None:
        self.all = "*" in entries
        self.hosts: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in entries:
            entry = entry.strip()
            if not entry or entry == "*":
                continue
            try:
                if "/" in entry:
                    self.networks.append(ipaddress.ip_network(entry, strict=False))
                else:
                    self.hosts.add(str(ipaddress.ip_address(entry)))
            except ValueError:
                self.hosts.add(entry)  # a literal such as "unix:"

    def contains(self, host: str | None) -> bool:
        if self.all:
            return True
        if host is None:
            return "unix:" in self.hosts
        if host in self.hosts:
            return True
        if self.networks:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                return False
            return any(address in net for net in self.networks)
        return False
