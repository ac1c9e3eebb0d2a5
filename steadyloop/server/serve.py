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
from functools import partial
from typing import Any

from steadyloop import __version__
from steadyloop.asgi.lifespan import Lifespan, LifespanFailed
from steadyloop.asgi.types import ASGIApp
from steadyloop.config import Config, ConfigError
from steadyloop.importing import AppLoadError, asgi2_to_asgi3, detect_interface, load_app
from steadyloop.observe.access import AccessLog
from steadyloop.observe.heartbeat import Heartbeat
from steadyloop.observe.inflight import INFLIGHT
from steadyloop.observe.logsetup import LogPipeline, setup_logging
from steadyloop.observe.metrics import process as process_stats
from steadyloop.observe.metrics.publisher import Publisher
from steadyloop.observe.metrics.shm import StatsSlot
from steadyloop.observe.threadpool import install_thread_pools
from steadyloop.observe.watchdog import Watchdog
from steadyloop.observe.words import counted
from steadyloop.protocols.http1.connection import Http1Connection
from steadyloop.protocols.http1.cycle import Http1Cycle
from steadyloop.protocols.shared import ServerState
from steadyloop.protocols.tls import TlsGate
from steadyloop.sdnotify import Notifier
from steadyloop.server.fdlimit import DescriptorWatch
from steadyloop.server.loops import new_event_loop
from steadyloop.server.sockets import bind_sockets, describe
from steadyloop.server.stats_sources import attach as attach_stats
from steadyloop.server.tls import build_context
from steadyloop.wsgi.bridge import WSGIBridge

logger = logging.getLogger("steadyloop.error")

HOUSEKEEPING_INTERVAL = 0.5  # seconds between timeout sweeps and Date refreshes
LAST_CALL = 0.5  # seconds an idle keep-alive connection may still bring a request at shutdown

# CPython's default collection thresholds (gc.get_threshold() in a fresh interpreter).
INTERPRETER_GC_THRESHOLDS = (700, 10, 10)
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
        self.is_worker = False  # one of a supervisor's (ours or gunicorn's) worker processes
        self.notifier: Notifier | None = None  # systemd's NOTIFY_SOCKET, for a lone process
        self._watchdog_ping: asyncio.TimerHandle | None = None
        self.descriptors = DescriptorWatch()  # running out of fds: said and counted
        # This process's numbers (steadyloop.observe.current_stats()); with --metrics, requests
        # are counted too and published to the supervisor's slot (or served by our own listener).
        self.stats = process_stats.ProcessStats()
        self.stats_slot: StatsSlot | None = None

    # -- the whole life ------------------------------------------------------------------------

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self._should_exit = asyncio.Event()
        if self._exit_requested.is_set():
            self._should_exit.set()
        # The watchdog covers the whole life, lifespan startup and shutdown included.
        self.watchdog = Watchdog(self.loop, self.config.watchdog, heartbeat=self.heartbeat)
        self.watchdog.start()
        publisher = Publisher(self.stats, self.stats_slot) if self.config.metrics.enabled else None
        try:
            if not await self.startup(sockets):
                return
            if publisher is not None:
                publisher.start()
            try:
                await self._should_exit.wait()
            finally:
                await self.shutdown()
        finally:
            self.watchdog.stop()
            if publisher is not None:
                publisher.stop()  # after the watchdog's last report: the final numbers
            process_stats.uninstall(self.stats)

    async def startup(self, sockets: list[socket.socket] | None) -> bool:
        config = self.config
        loop = asyncio.get_running_loop()
        # One --threads for all sync work: the default executor and anyio's limiter (FastAPI
        # `def` endpoints), both instrumented; the WSGI bridge sizes its own pool the same.
        install_thread_pools(loop, config.threads, config.watchdog.block_threshold)
        try:
            # Built by every worker from the files on disk: a reload picks up renewed ones.
            tls = build_context(config)
        except ConfigError as exc:
            logger.error("%s", exc)
            self.exit_code = EXIT_STARTUP_FAILED
            return False
        state = ServerState(config=config, app=self.app, loop=loop, access_log=self.access_log)
        if self.max_requests is not None:
            state.max_requests = self.max_requests
            state.on_max_requests = self._max_requests_reached
        self.state = state
        attach_stats(
            self.stats, state, self.watchdog, self.log_pipeline, count_requests=config.metrics.enabled
        )
        process_stats.install(self.stats)

        # Bound before the app's startup runs: a port that is taken must not leave the app
        # started (its connections open) with nobody to run its shutdown.
        if sockets is None:
            sockets = bind_sockets(config)
        self.lifespan = Lifespan(self.app, config.lifespan, state.lifespan_state)
        try:
            await self.lifespan.startup()
            if self.log_pipeline is not None:
                # Handlers the app set up in its startup go behind the queue too.
                self.log_pipeline.adopt_handlers()
        except LifespanFailed as exc:
            logger.error("Application startup failed: %s", exc)
            self.exit_code = EXIT_STARTUP_FAILED
            for sock in sockets:
                sock.close()
            return False

        self.descriptors.install(loop)
        for sock in sockets:
            # Where the server picks the protocol for a new connection. HTTP/1.1 hands over to
            # HTTP/2 itself (ALPN "h2", the h2c preface, Upgrade: h2c).
            factory: Callable[[], asyncio.BaseProtocol]
            if tls is None:
                factory = partial(Http1Connection, state)
            else:
                factory = partial(TlsGate, state, tls, partial(Http1Connection, state))
            server = await loop.create_server(factory, sock=sock, backlog=config.backlog)
            self._servers.append(server)
            self.addresses.append(describe(sock, tls=tls is not None))
        self._housekeeping = loop.call_later(HOUSEKEEPING_INTERVAL, self._tick)
        if config.websocket.engine == "wsproto":
            logger.info("--ws wsproto: served by the websockets sans-I/O engine, steadyloop's only one")
        for address in self.addresses:
            if self.is_worker:  # its supervisor said the version and how to quit
                logger.info("worker %d serving on %s", os.getpid(), address)
            else:
                logger.info("steadyloop %s serving on %s (Press CTRL+C to quit)", __version__, address)
        # Everything alive now (the app, its framework, their modules) lives as long as the
        # process. Freezing it keeps the cyclic GC from rescanning it in every full
        # collection: with FastAPI loaded those took ~35 ms, each one a stall of the loop.
        gc.collect()
        gc.freeze()
        _raise_young_gc_threshold()
        self.started.set()
        if self.notifier is not None:
            self.notifier.ready("serving on " + ", ".join(self.addresses))
            self._ping_systemd()
        if self.on_started is not None:
            self.on_started(self)
        return True

    def _ping_systemd(self) -> None:
        """WATCHDOG=1 from a timer on this loop: a stuck loop stops the pings."""
        notifier = self.notifier
        if notifier is None or notifier.watchdog_interval is None or self.loop is None:
            return
        notifier.watchdog()
        self._watchdog_ping = self.loop.call_later(notifier.watchdog_interval, self._ping_systemd)

    async def shutdown(self) -> None:
        state = self.state
        assert state is not None and self.loop is not None
        if self.notifier is not None:
            self.notifier.stopping()
        if self._watchdog_ping is not None:
            self._watchdog_ping.cancel()
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
                    "graceful shutdown timed out after %ss: cancelling %s",
                    timeout,
                    counted(state.tasks, "request"),
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
        for task, info in list(INFLIGHT.items()):
            if isinstance(task, asyncio.Task) and task.get_loop() is self.loop and not task.done():
                if isinstance(info, Http1Cycle) and isinstance(info.conn, Http1Connection):
                    info.conn.cancel_task(info)
                else:
                    task.cancel()

    def _tick(self) -> None:
        state = self.state
        assert state is not None and self.loop is not None
        # Rescheduled first: an error below must not stop timeouts and Date refreshes for good.
        self._housekeeping = self.loop.call_later(HOUSEKEEPING_INTERVAL, self._tick)
        now = state.now = time.monotonic()
        state.refresh_head_extra()
        self.descriptors.probe()
        for conn in list(state.connections):
            conn.check_timeouts(now)
        if state.hosts is not None:
            state.hosts.review()

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
        """SIGTERM and SIGINT stop the server -- when it owns the process's main thread.

        Embedded in another thread (tests, notebooks, other frameworks) the signals belong
        to the embedding program, which stops the server with `request_exit()`. Python only
        lets the main thread set signal handlers: asyncio says so with RuntimeError, uvloop
        with ValueError.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGTERM, self.handle_signal, signal.SIGTERM)
            loop.add_signal_handler(signal.SIGINT, self.handle_signal, signal.SIGINT)
        except (NotImplementedError, RuntimeError, ValueError):  # a platform without them
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
    is_worker: bool = False,
    stats_slot: StatsSlot | None = None,
) -> int:
    """Run one serving process to the end and return its exit code.

    `heartbeat`: a supervisor's shared slot, stamped by the loop (via the watchdog).
    A port that is taken (ConfigError, one line) is found before the app is imported;
    the socket listens once the server has started.
    `stats_slot`: a supervisor's shared slot for this worker's metrics (--metrics); without
    one, --metrics starts this process's own listener, on a thread of its own.
    """
    if sockets is None:
        sockets = bind_sockets(config, listen=False)
    pipeline = setup_logging(config.log)
    listener: Any = None
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
        server.is_worker = is_worker
        if not is_worker:
            server.notifier = Notifier.from_environment()
        server.stats_slot = stats_slot
        server.access_log = _make_access_log(config, pipeline)
        if config.metrics.enabled and stats_slot is None:
            listener = _start_metrics_listener(config, server)
        loop = new_event_loop(config.loop)
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(_serve_with_signals(server, sockets, on_started))
        finally:
            _close_loop(loop)
        return server.exit_code
    finally:
        if listener is not None:
            listener.stop()
        pipeline.shutdown(config.log.drain_timeout)


async def _serve_with_signals(
    server: Server, sockets: list[socket.socket] | None, on_started: Callable[[Server], None] | None
) -> None:
    server.install_signal_handlers()
    server.on_started = on_started
    await server.serve(sockets)


def _raise_young_gc_threshold() -> None:
    """A young-generation collection walks every in-flight request's objects, so at the
    interpreter's default threshold (a collection every 700 net allocations) its cost per
    request grew with the number of open connections: 87k instructions per request at 8
    connections, 90k at 64, 100k at 256 (bench/instructions.py --connections). Ten times
    the threshold makes it flat (87k, 87k, 88k) and keeps cyclic garbage only slightly
    longer. An app that set its own thresholds keeps them."""
    if gc.get_threshold() == INTERPRETER_GC_THRESHOLDS:
        young, middle, old = INTERPRETER_GC_THRESHOLDS
        gc.set_threshold(young * 10, middle, old)


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


def _start_metrics_listener(config: Config, server: Server) -> Any:
    """--metrics in one process: the listener on a thread of its own, never on the loop.
    (Imported here: prometheus_client is only loaded where metrics are served.)"""
    from steadyloop.observe.metrics.listener import bind
    from steadyloop.observe.metrics.standalone import StandaloneListener

    listener = StandaloneListener(bind(config.metrics.address, config.metrics.port), server.stats)
    listener.start()
    return listener


def _make_access_log(config: Config, pipeline: LogPipeline) -> AccessLog | None:
    if not config.log.access_log:
        return None
    return AccessLog(pipeline, config.log.access_log_format)
