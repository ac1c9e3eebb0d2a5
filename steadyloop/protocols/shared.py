"""What one worker's connections share: settings decided once, live counters, the clock."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from steadyloop.http.parser import SpareParsers
from steadyloop.http.response import DateCache
from steadyloop.protocols.base import Connection
from steadyloop.protocols.eager import Hosts
from steadyloop.protocols.proxies import TrustedProxies

if TYPE_CHECKING:
    from steadyloop.asgi.cycle import RequestCycle
    from steadyloop.asgi.types import ASGIApp
    from steadyloop.config import Config
    from steadyloop.observe.access import AccessLog
    from steadyloop.observe.metrics.requests import RequestCounters


@dataclass(eq=False)
class ServerState:
    """Shared by every connection of one worker. Only the loop thread touches it."""

    config: Config
    app: ASGIApp
    loop: asyncio.AbstractEventLoop
    access_log: AccessLog | None = None
    lifespan_state: dict[str, Any] = field(default_factory=dict)
    connections: set[Connection] = field(default_factory=set)
    tasks: int = 0  # app tasks running
    requests: int = 0  # requests completed, answered by the app or by the server
    # --max-requests: when `requests` reaches this, `on_max_requests` is called (once).
    max_requests: int = sys.maxsize
    on_max_requests: Callable[[], None] | None = None
    shutting_down: bool = False
    # Coarse clock, advanced by the housekeeping timer; connections stamp it rather than
    # calling the clock on every request.
    now: float = field(default_factory=time.monotonic)
    date: DateCache = field(default_factory=DateCache)
    server_header_block: bytes = b""
    idle_waiter: asyncio.Future[None] | None = None
    metrics: RequestCounters | None = None  # --metrics: counted where a request ends
    # (server address, scheme) -> the HTTP/1.1 scope base its connections share (one per
    # listening address and scheme; see Http1Connection.connection_made).
    scope_bases: dict[tuple[Any, str], dict[str, Any]] = field(default_factory=dict)

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
        # --eager-start: where an HTTP/1.1 request's first step may run inline (eager.py).
        # Only with no task factory, like direct_http1 below.
        self.hosts: Hosts | None = Hosts(self.loop) if self.plain_tasks and self.config.eager_start else None
        # An app that can serve an HTTP/1.1 request without a task of its own (the WSGI
        # bridge): `serve_http1_direct(scope, cycle)`, see Http1Connection.direct_to_task.
        # Only with no task factory: one installed on the loop expects to see every request.
        direct = getattr(type(self.app), "serve_http1_direct", None) if self.plain_tasks else None
        self.direct_http1: Callable[[Any, Any], None] | None = (
            self.app.serve_http1_direct if direct is not None else None  # type: ignore[attr-defined]
        )
        self.proxies = TrustedProxies(config.forwarded_allow_ips)
        limits = config.limits
        # HTTP/1.1 parsers, borrowed per read (Http1Connection.data_received).
        self.spare_parsers = SpareParsers(
            limits.max_request_line, limits.max_header_count, limits.max_header_size, limits.max_head_size
        )

    def refresh_head_extra(self) -> None:
        """Server-added response headers (Date, Server, --header) as one block, rebuilt by the
        housekeeping timer so that each response pays no clock call or concatenation."""
        self.date.refresh()
        if self.config.date_header:
            self.head_extra_block = self.date.value + self.server_header_block
        else:
            self.head_extra_block = self.server_header_block

    def trusts(self, host: str | None) -> bool:
        return self.config.proxy_headers and self.proxies.contains(host)

    def request_done(self, status: int, protocol: str, started_at: float) -> None:
        """A request is complete (the app's answer, or the server's 500): the one place
        requests are counted, for --max-requests and the metrics. `protocol` is the ASGI
        http_version ("1.1", "2") or "websocket"; `started_at` is time.perf_counter() when
        it began (0.0 when nothing times requests). Http1Connection.response_complete skips
        the call when neither `metrics` nor `on_max_requests` is set: keep the two in step."""
        self.requests += 1
        metrics = self.metrics  # metrics hook: the one place a finished request is measured
        if metrics is not None:
            metrics.request_done(status, protocol, time.perf_counter() - started_at)
        if self.requests == self.max_requests and self.on_max_requests is not None:
            self.on_max_requests()

    def check_idle(self) -> None:
        """During shutdown, wake whoever waits for the last connection and task to end."""
        if self.shutting_down and not self.connections and self.tasks == 0:
            waiter = self.idle_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)


def log_request(access_log: AccessLog, cycle: RequestCycle[Any]) -> None:
    """One access-log line for a finished request, over any protocol: what the app saw (the
    client a trusted proxy named, the path below --root-path), as uvicorn shows it."""
    scope = cycle.scope
    client = scope["client"]
    access_log.log(
        f"{client[0]}:{client[1]}" if client else "-",
        cycle.method,
        scope["root_path"] + cycle.target.decode("latin-1"),
        scope["http_version"],
        cycle.status,
        cycle.bytes_sent,
        time.perf_counter() - cycle.started_at,
        cycle.request_id,
        cycle.head.headers,
        list(cycle.response_headers),
        cycle.cut_short,
    )
