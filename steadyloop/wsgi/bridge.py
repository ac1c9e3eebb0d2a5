"""WSGIBridge: a WSGI app served as an ASGI 3 app, each request on a bounded thread pool.

    WSGIBridge(app, threads=40)      what `resolve_app` builds for a WSGI app

To the server the bridge is an ASGI app, so keep-alive, pipelining, limits,
strict parsing, timeouts and graceful shutdown are the code paths ASGI apps
get (with the HTTP/1.1 shortcut below). Per request:

    loop:    http scope -> submit a job to the pool -> Exchange.pump: send / receive
    thread:  build_environ -> app(environ, start_response) -> iterate -> close()

Over HTTP/1.1 the connection skips the task when it can (`serve_http1_direct`):
a response the thread finishes whole (head, body, end: most of them; a list
response crosses as one piece) is handed to the request's cycle in the loop
callback that the thread's wake-up runs, with no asyncio.Task, and the thread
is free as soon as the loop has it, however large; anything else (a streamed
body, wsgi.input, a file, an error) gets a task running Exchange.pump from
that point, as above. Each request is one `_Job`: the pool's job, its own
wait ticket, and the waiter its first wake-up resolves.

The pool is the bridge's own (`steadyloop.wsgi.pool`, daemon threads, sized
by `--threads`), not the loop's default executor: the connection sends
wsgi.file_wrapper files with sendfile on the default executor while the WSGI
thread waits for it, and one shared pool would deadlock once every thread
waited for a sendfile that has no thread left to run on.

The bridge also answers the lifespan protocol: startup binds the pool's
statistics to the loop, shutdown stops the pool's threads.
"""

from __future__ import annotations

import asyncio
from typing import Any

from steadyloop.asgi.types import Receive, Scope, Send
from steadyloop.observe.threadpool import PoolStats, register
from steadyloop.wsgi.environ import build_environ
from steadyloop.wsgi.exchange import Exchange, Waker
from steadyloop.wsgi.pool import PoolJob, ThreadPool
from steadyloop.wsgi.runner import WSGIApp, run


class _Job(PoolJob):
    """One request: the job a pool thread runs, its own ticket in the pool's wait statistics,
    and, served without a task (HTTP/1.1, `cycle` set), what the thread's first wake-up
    resolves. One object per request where three would do the same."""

    __slots__ = ("bridge", "cycle", "exchange", "over", "scope")

    def __init__(self, bridge: WSGIBridge, scope: Scope, exchange: Exchange, cycle: Any) -> None:
        self.label = None  # named by `what`, from the scope, only if a report is written
        self.reported = False
        self.bridge = bridge
        self.scope = scope
        self.exchange = exchange
        self.cycle = cycle  # an Http1Cycle when served directly, else None
        self.over = False

    def what(self) -> str:
        scope = self.scope
        return f"{scope['method']} {scope['path']}"

    def run(self) -> None:
        """The request on a pool thread."""
        exchange = self.exchange
        if exchange.aborted:
            return  # cancelled while queued (shutdown gave up on it): do not run the app at all
        bridge = self.bridge
        try:
            environ = build_environ(self.scope, exchange.read, multiprocess=bridge.multiprocess)
        except Exception as exc:  # a bug of ours; still answer the request (500)
            exchange.fail(exc)
            return
        run(bridge.app, environ, exchange)

    # -- served directly: the loop's side ----------------------------------------------------

    def done(self) -> bool:  # a Wakeable, like a future: the loop's Waker calls these two
        return self.over

    def set_result(self, result: None, /) -> None:
        """The thread's first wake-up: called by the Waker on the loop, no future between."""
        if self.over:
            return  # the client left first
        self.over = True
        cycle = self.cycle
        cycle.on_gone = None
        exchange = self.exchange
        response = exchange.take_response()
        if response is None:
            cycle.conn.direct_to_task(cycle, self.bridge._pump(exchange, cycle.receive, cycle.send))
            return
        try:
            cycle.respond(*response)
        except Exception as exc:  # refused headers (500), a client that just left
            cycle.conn.direct_done(cycle, exc)
            return
        cycle.conn.direct_done(cycle, None)

    def gone(self) -> None:
        """The client left (or the server gave up on it) before the response: on the loop."""
        if not self.over:
            self.over = True
            self.exchange.abort()  # a queued job is skipped; a running one stops at its next post
            self.cycle.conn.direct_done(self.cycle, None)


class WSGIBridge:
    def __init__(
        self,
        app: WSGIApp,
        threads: int = 40,
        *,
        block_threshold: float = 0.1,
        multiprocess: bool = False,
    ) -> None:
        self.app = app
        self.multiprocess = multiprocess
        self.stats = register(PoolStats("wsgi", threads, block_threshold))
        self.pool = ThreadPool(threads, self.stats)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waker: Waker | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            # WSGI has no WebSocket: a close before accept refuses the handshake with 403.
            await receive()
            await send({"type": "websocket.close"})
        else:
            raise RuntimeError(f"WSGI apps cannot serve {kind!r} scopes")

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        waker = self._waker
        if loop is not self._loop or waker is None:
            waker = self._bind(loop)
        exchange = Exchange(loop, waker)
        self.pool.submit_job(_Job(self, scope, exchange, None))
        await self._pump(exchange, receive, send)

    @staticmethod
    async def _pump(exchange: Exchange, receive: Receive, send: Send) -> None:
        try:
            await exchange.pump(receive, send)
        except BaseException:
            exchange.abort()  # the thread's next post or read raises Aborted and it moves on
            raise

    def serve_http1_direct(self, scope: Scope, cycle: Any) -> None:
        """An HTTP/1.1 request without an asyncio.Task: the common small response is handed
        to the cycle by one loop callback when the thread is done (see `_Job.set_result`). `cycle` is
        an Http1Cycle; its connection counts the request as a task until `direct_done`."""
        loop = asyncio.get_running_loop()
        waker = self._waker
        if loop is not self._loop or waker is None:
            waker = self._bind(loop)
        exchange = Exchange(loop, waker)
        job = _Job(self, scope, exchange, cycle)
        exchange.wait_first(job)
        self.pool.submit_job(job)
        cycle.on_gone = job.gone

    def _bind(self, loop: asyncio.AbstractEventLoop) -> Waker:
        self._loop = loop
        waker = self._waker = Waker(loop)
        self.stats.bind(loop)
        return waker

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message: Any = await receive()
            if message["type"] == "lifespan.startup":
                self._bind(asyncio.get_running_loop())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.pool.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return
