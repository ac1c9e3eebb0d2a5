"""Serving in one process: serve -> startup -> main loop -> shutdown.

    serve_process(config)      the whole life of one worker process, from logging
                               set-up to the last drained log record; returns an exit code
    Server(config, app).serve  the asyncio part, on the worker's own loop

Threads in a worker process: the event loop thread (this module, every
connection, every async handler), the sync pool (`--threads`: WSGI and `def`
endpoints, file reads), the log writer thread, and the watchdog thread.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable

from steadyloop.asgi.lifespan import Lifespan, LifespanFailed
from steadyloop.asgi.types import ASGIApp
from steadyloop.config import Config
from steadyloop.importing import AppLoadError, asgi2_to_asgi3, detect_interface, load_app
from steadyloop.observe.access import AccessLog
from steadyloop.observe.heartbeat import Heartbeat
from steadyloop.observe.inflight import INFLIGHT
from steadyloop.observe.logsetup import LogPipeline, setup_logging
from steadyloop.observe.threadpool import install_thread_pools
from steadyloop.observe.watchdog import Watchdog
from steadyloop.protocols.http1.connection import Http1Connection
from steadyloop.protocols.shared import ServerState
from steadyloop.server.loops import new_event_loop
from steadyloop.server.sockets import bind_sockets, describe
from steadyloop.wsgi.bridge import WSGIBridge

logger = logging.getLogger("steadyloop.error")

HOUSEKEEPING_INTERVAL = 0.5  # seconds between timeout sweeps and Date refreshes
LAST_CALL = 0.5  # seconds an idle keep-alive connection may still bring a request at shutdown

EXECUTOR_GRACE = 5.0  # seconds the sync pool gets to finish its jobs once the loop is done
EXIT_OK = 0
EXIT_STARTUP_FAILED = 3


def resolve_app(config: Config) -> ASGIApp:
    """Import and adapt the app to ASGI 3 (WSGI apps go through the WSGI bridge)."""
    app = load_app(config.app, factory=config.factory, app_dir=config.app_dir)
    interface = config.interface if config.interface != "auto" else detect_interface(app)
    if interface == "asgi2":
        return asgi2_to_asgi3(app)
    if interface == "wsgi":
        bridge: ASGIApp = WSGIBridge(
            app,
            threads=config.threads,
            block_threshold=config.watchdog.block_threshold,
            multiprocess=config.worker.workers > 1,
        )
        return bridge
    result: ASGIApp = app
    return result


class Server:
    def __init__(self, config: Config, app: ASGIApp) -> None:
        self.config = config
        self.app = app
        self.exit_code = EXIT_OK
        self.started = threading.Event()  # set once listening; tests and supervisors wait on it
        self.addresses: list[str] = []
        self._should_exit: asyncio.Event | None = None
        self._force_exit = False
        self._exit_requested = threading.Event()
        self._servers: list[asyncio.AbstractServer] = []
        self._housekeeping: asyncio.TimerHandle | None = None
        self.state: ServerState | None = None
        self.access_log: AccessLog | None = None
        self.log_pipeline: LogPipeline | None = None
        # --max-requests (plus this process's share of the jitter): stop after that many.
        worker = config.worker
        self.max_requests: int | None = None
        if worker.max_requests is not None:
            self.max_requests = worker.max_requests + random.randint(0, worker.max_requests_jitter)
        # Called once when max_requests is reached, before the graceful stop begins.
        self.on_max_requests: Callable[[], None] | None = None
        self.on_started: Callable[[Server], None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        # Set by a supervisor before serving: the shared slot it reads to tell a stuck loop.
        self.heartbeat: Heartbeat | None = None
        self.watchdog: Watchdog | None = None

    # -- the whole life ------------------------------------------------------------------------

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self._should_exit = asyncio.Event()
        if self._exit_requested.is_set():
            self._should_exit.set()
        # The watchdog covers the whole life, lifespan startup and shutdown included.
        self.watchdog = Watchdog(self.loop, self.config.watchdog, heartbeat=self.heartbeat)
        self.watchdog.start()
        try:
            if not await self.startup(sockets):
                return
            try:
                await self._should_exit.wait()
            finally:
                await self.shutdown()
        finally:
            self.watchdog.stop()

    async def startup(self, sockets: list[socket.socket] | None) -> bool:
        config = self.config
        loop = asyncio.get_running_loop()
        # One --threads for all sync work: the default executor and anyio's limiter (FastAPI
        # `def` endpoints), both instrumented; the WSGI bridge sizes its own pool the same.
        install_thread_pools(loop, config.threads, config.watchdog.block_threshold)
        state = ServerState(config=config, app=self.app, loop=loop, access_log=self.access_log)
        if self.max_requests is not None:
            state.max_requests = self.max_requests
            state.on_max_requests = self._max_requests_reached
        self.state = state

        self.lifespan = Lifespan(self.app, config.lifespan, state.lifespan_state)
        try:
            await self.lifespan.startup()
            if self.log_pipeline is not None:
                # Handlers the app set up in its startup go behind the queue too.
                self.log_pipeline.adopt_handlers()
        except LifespanFailed as exc:
            logger.error("Application startup failed: %s", exc)
            self.exit_code = EXIT_STARTUP_FAILED
            return False

        if sockets is None:
            sockets = bind_sockets(config)
        for sock in sockets:
            # Where the server picks the protocol for a new connection.
            server = await loop.create_server(
                lambda: Http1Connection(state), sock=sock, backlog=config.backlog
            )
            self._servers.append(server)
            self.addresses.append(describe(sock))
        self._housekeeping = loop.call_later(HOUSEKEEPING_INTERVAL, self._tick)
        if config.websocket.engine == "wsproto":
            logger.info("--ws wsproto: served by the websockets sans-I/O engine, steadyloop's only one")
        for address in self.addresses:
            logger.info("steadyloop serving on %s (pid %d)", address, os.getpid())
        # Everything alive now (the app, its framework, their modules) lives as long as the
        # process. Freezing it keeps the cyclic GC from rescanning it in every full
        # collection: with FastAPI loaded those took ~35 ms, each one a stall of the loop.
        gc.collect()
        gc.freeze()
        self.started.set()
        if self.on_started is not None:
            self.on_started(self)
        return True

    async def shutdown(self) -> None:
        state = self.state
        assert state is not None and self.loop is not None
        for server in self._servers:
            server.close()
        state.shutting_down = True
        await self._close_connections(state)
        timeout = self.config.timeouts.graceful_shutdown
        if (state.connections or state.tasks) and not self._force_exit:
            waiter = state.idle_waiter = self.loop.create_future()
            state.check_idle()
            try:
                await asyncio.wait_for(asyncio.shield(waiter), timeout)
            except asyncio.TimeoutError:
                logger.warning(
                    "graceful shutdown timed out after %ss: cancelling %d requests",
                    timeout,
                    state.tasks,
                )
            except asyncio.CancelledError:
                pass
        self._abort_everything()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        try:
            await self.lifespan.shutdown()
        except LifespanFailed as exc:
            logger.error("Application shutdown failed: %s", exc)
            self.exit_code = EXIT_STARTUP_FAILED

    async def _close_connections(self, state: ServerState) -> None:
        """Busy connections close after their response; idle ones get a last call first.

        Connections the listening socket accepted just before it closed are still
        being set up (connection_made comes a loop turn or two later): let them
        register first, or the worker could exit with their requests unread and
        their clients would see a reset.

        Closing an idle keep-alive connection races with the request its client
        may be sending on it right now: the client sees "disconnected without a
        response" (a HUP or --max-requests recycle under load would fail requests).
        So an idle connection stays open for LAST_CALL seconds: a request that
        arrives is served, and the connection closes after it (shutting_down);
        one still idle then is closed, as the keep-alive timeout would.
        """
        loop = self.loop
        assert loop is not None
        for _ in range(3):
            await asyncio.sleep(0)
        idle = False
        for conn in list(state.connections):
            if conn.is_idle() and not self._force_exit:
                idle = True
            else:
                conn.shutdown()
        if not idle:
            return

        def last_call_over() -> None:
            for conn in list(state.connections):
                if conn.is_idle():
                    conn.shutdown()

        loop.call_later(min(LAST_CALL, self.config.timeouts.keep_alive), last_call_over)

    def _abort_everything(self) -> None:
        state = self.state
        assert state is not None
        for conn in list(state.connections):
            conn.abort()
        for task in list(INFLIGHT):
            if isinstance(task, asyncio.Task) and task.get_loop() is self.loop and not task.done():
                task.cancel()

    def _tick(self) -> None:
        state = self.state
        assert state is not None and self.loop is not None
        # Rescheduled first: an error below must not stop timeouts and Date refreshes for good.
        self._housekeeping = self.loop.call_later(HOUSEKEEPING_INTERVAL, self._tick)
        now = state.now = time.monotonic()
        state.refresh_head_extra()
        for conn in list(state.connections):
            conn.check_timeouts(now)

    # -- stopping --------------------------------------------------------------------------

    def _max_requests_reached(self) -> None:
        logger.info(
            "process %d served %d requests (--max-requests): stopping gracefully",
            os.getpid(),
            self.max_requests,
        )
        if self.on_max_requests is not None:
            self.on_max_requests()
        self.request_exit()

    def request_exit(self) -> None:
        """Begin a graceful shutdown; safe to call from any thread."""
        self._exit_requested.set()
        loop = self.loop
        if loop is not None and self._should_exit is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._should_exit.set)

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGTERM, self.handle_signal, signal.SIGTERM)
            loop.add_signal_handler(signal.SIGINT, self.handle_signal, signal.SIGINT)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signals
            pass

    def handle_signal(self, sig: int) -> None:
        if self._exit_requested.is_set() and sig == signal.SIGINT:
            # A second Ctrl+C: stop waiting for in-flight requests.
            logger.warning("second SIGINT: forcing exit")
            self._force_exit = True
            self._abort_everything()
            waiter = self.state.idle_waiter if self.state else None
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            return
        logger.info("received %s: shutting down gracefully", signal.Signals(sig).name)
        self.request_exit()


# -- one process ------------------------------------------------------------------------------


def serve_process(
    config: Config,
    sockets: list[socket.socket] | None = None,
    *,
    on_started: Callable[[Server], None] | None = None,
    heartbeat: Heartbeat | None = None,
) -> int:
    """Run one serving process to the end and return its exit code.

    `heartbeat`: a supervisor's shared slot, stamped by the loop (via the watchdog).
    """
    pipeline = setup_logging(config.log)
    try:
        try:
            app = resolve_app(config)
        except AppLoadError as exc:
            logger.error("%s", exc)
            return 1
        pipeline.adopt_handlers()
        server = Server(config, app)
        server.log_pipeline = pipeline
        server.heartbeat = heartbeat
        server.access_log = _make_access_log(config, pipeline)
        loop = new_event_loop(config.loop)
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(_serve_with_signals(server, sockets, on_started))
        finally:
            _close_loop(loop)
        return server.exit_code
    finally:
        pipeline.shutdown(config.log.drain_timeout)


async def _serve_with_signals(
    server: Server, sockets: list[socket.socket] | None, on_started: Callable[[Server], None] | None
) -> None:
    server.install_signal_handlers()
    server.on_started = on_started
    await server.serve(sockets)


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    try:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        # Sync jobs still running (a stuck `def` endpoint) must not hold the exit forever;
        # 3.11's shutdown_default_executor has no timeout of its own.
        try:
            loop.run_until_complete(asyncio.wait_for(loop.shutdown_default_executor(), EXECUTOR_GRACE))
        except asyncio.TimeoutError:
            logger.warning("sync jobs still running %.0fs after shutdown; leaving them", EXECUTOR_GRACE)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _make_access_log(config: Config, pipeline: LogPipeline) -> AccessLog | None:
    if not config.log.access_log:
        return None
    return AccessLog(pipeline, config.log.access_log_format)
