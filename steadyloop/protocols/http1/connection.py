"""One HTTP/1.1 connection on the event loop: bytes from the socket to request cycles.

The server sees it through the connection interface (`protocols.base.Connection`:
is_idle, shutdown, check_timeouts, abort); the cycle it runs (`Http1Cycle`) sees it
through `Http1Owner`.

Callback order (asyncio's grammar):

    connection_made -> data_received* [-> eof_received] -> connection_lost

Requests on a connection are served one at a time, in order. The bytes of a
pipelined request stay in the parser until the response before it is
complete, so responses can never overtake each other. While requests are
pipelined, whole responses are corked: gathered and written with one
`transport.write` when the pipeline is drained (or when it stops moving for a
loop turn), one send instead of one per request; watching for that stop costs
no callback per request in the common case (see `_stall_check`). Every callback
catches everything but SystemExit/KeyboardInterrupt and turns it into one fatal
path: log, close this connection, keep the worker.

This module is the request hot path; measure any change with bench/run.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from asyncio.tasks import _enter_task, _leave_task
from collections.abc import Callable
from contextvars import copy_context
from types import CoroutineType
from typing import Any, Final

from steadyloop.asgi.cycle import ClientDisconnected
from steadyloop.asgi.scope import ASGI_VERSION, EXTENSIONS, SPEC_VERSION, decode_path, split_target
from steadyloop.http.errors import ProtocolError
from steadyloop.http.parser import END_OF_MESSAGE, NEED_DATA, RequestHead, RequestParser
from steadyloop.http.response import simple_response
from steadyloop.observe.inflight import INFLIGHT
from steadyloop.protocols import websocket
from steadyloop.protocols.eager import TASK_NAME, Resumed
from steadyloop.protocols.http1.cycle import Http1Cycle
from steadyloop.protocols.http2.connection import H2_PREFACE, start_http2
from steadyloop.protocols.shared import ServerState, log_request
from steadyloop.protocols.tls import tls_extension

logger = logging.getLogger("steadyloop.error")

_Task = asyncio.Task
_Coroutine = CoroutineType
# Shared by every scope: apps read it, none has a reason to write to it.
_ASGI = {"version": ASGI_VERSION, "spec_version": SPEC_VERSION}
# Lingering close: how long, and how many bytes, we keep reading (and dropping) after our
# last response when the client may still be sending.
LINGER_SECONDS = 2.0
LINGER_BYTES = 1024 * 1024
# A closing connection whose client does not take its last response is cut after this.
CLOSE_GRACE = 10.0
# Pipelined bytes buffered while a response is in progress before reading pauses.
PIPELINE_HIGH_WATER = 64 * 1024
# Plain targets seen before (ASCII origin-form, no %-escape, no fragment) -> (raw path, query,
# path): a service gets the same few again and again. Bounded; only short targets are kept.
_TARGETS: dict[bytes, tuple[bytes, bytes, str]] = {}
_TARGETS_LIMIT = 1024
_TARGET_MAX = 256
_SWITCHING_TO_H2C = b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"


class Http1Connection(asyncio.Protocol):
    __slots__ = (
        "answered",
        "check_armed",
        "checked",
        "client",
        "closing",
        "closing_since",
        "concurrency",
        "corked",
        "cycle",
        "data_since",
        "done",
        "drain_waiter",
        "eager",
        "extensions",
        "fresh",
        "head_since",
        "hosts",
        "idle_since",
        "keep_alive_off",
        "last_task",
        "lingering",
        "loop",
        "parser",
        "proxy_trusted",
        "read_paused",
        "root_path",
        "scheme",
        "scope_base",
        "server",
        "spare_parsers",
        "starting",
        "state",
        "transport",
        "write",
        "write_buffered",
        "write_paused",
        "write_stall_since",
    )

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.loop = state.loop
        self.done = state.done
        config = state.config
        limits = config.limits
        # What each request reads of the (frozen) config, read once: no attribute chains per request.
        self.concurrency = limits.concurrency
        self.root_path = config.root_path
        self.keep_alive_off = not config.timeouts.keep_alive  # --timeout-keep-alive 0
        # A parser of its own only while a request is part-read or waiting (see
        # data_received); between requests, the one that is never fed.
        self.parser = RESTING
        self.spare_parsers = state.spare_parsers
        self.cycle: Http1Cycle | None = None
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int | None] | None = None
        self.scheme = "http"
        self.extensions = EXTENSIONS
        self.fresh = True  # no byte received yet: the first ones may not be HTTP/1.1 at all
        self.proxy_trusted = False
        self.write_paused = False
        self.write_buffered = 0  # the transport's unsent bytes at the last sweep
        self.write_stall_since = 0.0  # when the client last took response bytes (sweep clock)
        self.read_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.closing = False
        self.closing_since = 0.0
        self.lingering = 0  # bytes still accepted (and dropped) after a lingering close; 0: none
        self.idle_since = state.now
        self.data_since = state.now  # when bytes last arrived (housekeeping clock)
        self.head_since: float | None = None
        # Whole responses go out through `write`: the transport's own write, or while corked
        # the cork's list.append (no test per response for which one it is).
        self.write: Callable[[bytes], object] = _not_connected
        self.corked: list[bytes] | None = None
        self.answered = 0  # responses completed on this connection (the cork's progress)
        self.scope_base: dict[str, Any] = {}  # set by connection_made
        self.checked = 0  # `answered` at the last stall check
        # The pending stall check: None, _SOON (a call_soon handle) or the task whose
        # _task_done carries it.
        self.check_armed: object = None
        self.last_task: asyncio.Task[None] | None = None  # ran the last response completed while corked
        # Eager start (protocols/eager.py): True while data_received parses, when a request
        # that starts may wait for its first step to run inline, as `starting`.
        self.hosts = state.hosts
        self.eager = False
        self.starting: Http1Cycle | None = None

    # -- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses
        self.write = transport.write  # type: ignore[attr-defined]
        state = self.state
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.scheme = "https"
            if ssl_object.selected_alpn_protocol() == "h2":
                start_http2(state, self.transport)
                return
            if state.config.tls.cert_reqs:  # mutual TLS: the app may want to know who calls
                self.extensions = {**EXTENSIONS, "tls": tls_extension(ssl_object)}
        state.connections.add(self)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.client = (str(peer[0]), int(peer[1]))
        sock_name = transport.get_extra_info("sockname")
        if isinstance(sock_name, tuple) and len(sock_name) >= 2:
            self.server = (str(sock_name[0]), int(sock_name[1]))
        elif isinstance(sock_name, str):
            self.server = (sock_name, None)
        self.proxy_trusted = state.trusts(self.client[0] if self.client else None)
        # What every request's scope shares; each request copies it (a dict copy is cheaper
        # than building a 14-key dict) and fills in its own entries (client, method, path,
        # raw_path, query_string, headers, state: placeholders here, which keep the keys in
        # the order apps see them). Shared by the connections of one listening address, so
        # that with many connections the copy reads a dict in cache, not one per connection.
        shared = state.scope_bases if self.extensions is EXTENSIONS else None
        key = (self.server, self.scheme)
        base = shared.get(key) if shared is not None else None
        if base is None:
            base = {
                "type": "http",
                "asgi": _ASGI,
                "http_version": "1.1",
                "server": self.server,
                "client": None,
                "scheme": self.scheme,
                "method": "GET",
                "root_path": self.root_path,
                "path": "/",
                "raw_path": b"/",
                "query_string": b"",
                "headers": [],
                "state": {},
                "extensions": self.extensions,
            }
            if shared is not None:
                shared[key] = base
        self.scope_base = base
        limit = self.concurrency
        if limit is not None and len(state.connections) > limit:
            self._refuse(503, "too many connections")

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            # Closing: read and drop what the client still sends, so that our answer is not
            # destroyed by a reset (RFC 9112 §9.6), but only so much of it.
            self.lingering -= len(data)
            if self.lingering <= 0:
                self.transport.abort()
            return
        self.data_since = self.state.now
        if self.fresh:
            self.fresh = False
            if self._not_http1(data):
                return
        if self.cycle is None and self.head_since is None:
            # A new head starts arriving: it has --timeout-header-read to be complete.
            self.head_since = self.state.now
        parser = self.parser
        if parser is RESTING:
            # Borrowed from the worker for this read, and given back below if it ends at
            # rest: a connection between requests holds no parser, and with many
            # connections each read uses the same few parsers, in cache, not one of its own.
            parser = self.parser = self.spare_parsers.take()
        try:
            parser.feed(data)
            hosts = self.hosts
            self.eager = hosts is not None and hosts.enabled
            self._pump()
            self.eager = False
            cycle = self.starting
            if cycle is not None:
                self.starting = None
                self._start_eagerly(cycle)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            self.eager = False
            cycle = self.starting
            if cycle is not None and cycle.coro is not None:
                self.starting = None
                cycle.coro.close()
            self._fatal("error while reading a request")
            return
        if self.parser is parser and parser.at_rest():
            self.parser = RESTING
            self.spare_parsers.give_back(parser)

    def _not_http1(self, data: bytes) -> bool:
        """The first bytes of a connection: a TLS ClientHello or the HTTP/2 preface are not
        HTTP/1.1. True when this connection is dealt with (closed, or handed over)."""
        if data[:2] == b"\x16\x03" and self.scheme == "http":
            # A TLS record header (RFC 8446 §5.1: handshake(22), legacy version 3.x).
            logger.info("a TLS client reached a plain-HTTP port from %s: closed", _peer(self.client))
            self.closing = True
            self.transport.abort()
            return True
        if (
            data[:3] == b"PRI"
            and self.scheme == "http"
            and self.state.config.http != "1"
            and (data[:24] == H2_PREFACE or H2_PREFACE.startswith(data))
        ):
            # "PRI * HTTP/2.0": a client that knows we speak HTTP/2 (RFC 9113 §3.3).
            self.state.connections.discard(self)
            start_http2(self.state, self.transport, data)
            return True
        if self.state.config.http == "2":
            logger.info("HTTP/1.1 from %s on an HTTP/2-only server (--http 2): closed", _peer(self.client))
            self.closing = True
            self.transport.write(simple_response(505, b"this server speaks HTTP/2 only\n"))
            self.transport.close()
            return True
        return False

    def eof_received(self) -> bool | None:
        # A FIN from the client. A half-closing client that still reads looks the same as one
        # that has gone away; like most servers we take it as gone (returning None lets the
        # transport close), so that an app waiting in receive() hears http.disconnect.
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        state = self.state
        state.connections.discard(self)
        self.closing = True
        self.corked = None
        cycle = self.cycle
        if cycle is not None:
            self.cycle = None
            cycle.on_disconnect()
        self._wake_drain()
        state.check_idle()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self.write_stall_since = self.state.now  # the client took bytes: progress
        self._wake_drain()

    def _wake_drain(self) -> None:
        waiter = self.drain_waiter
        if waiter is not None:
            self.drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- reading requests --------------------------------------------------------------------

    def _pump(self) -> None:
        """Turn buffered bytes into requests and body for the current cycle."""
        parser = self.parser
        try:
            while True:
                cycle = self.cycle
                if cycle is not None and cycle.body_complete:
                    buffered = parser.buffered
                    if buffered:
                        # A pipelined request waits in the parser for this response to
                        # finish: gather the responses until the pipeline drains.
                        if self.corked is None:
                            starting = self.starting
                            if starting is not None:
                                # Pipelined behind it: a task serves this one too, and
                                # carries the cork's stall check like the rest.
                                self.starting = None
                                self._start_task(starting)
                            self._cork()
                        if buffered > PIPELINE_HIGH_WATER:
                            self.pause_reading()
                    return
                events = parser.events
                if not events:
                    return
                if cycle is not None and events[0] is END_OF_MESSAGE:
                    # parser.next_event and cycle.end_body, inlined: every request ends so.
                    events.popleft()
                    cycle.body_complete = True
                    if cycle.waiter is not None:
                        cycle._wake()
                    continue
                event = parser.next_event()
                if event is NEED_DATA:
                    return
                if cycle is None:
                    if self.closing:
                        return
                    # With no cycle, the parser's next event is a head (its grammar).
                    self._start_request(event)  # type: ignore[arg-type]
                elif event is END_OF_MESSAGE:
                    cycle.end_body()
                else:
                    assert isinstance(event, bytes)
                    cycle.feed_body(event)
        except ProtocolError as exc:
            self._refuse(exc.status, exc.reason)

    def _start_request(self, head: RequestHead) -> None:
        self.head_since = None
        if head.upgrade and self._upgrade_to_h2c(head):
            return
        state = self.state
        limit = self.concurrency
        if limit is not None and state.tasks >= limit:
            raise ProtocolError(503, "concurrency limit reached")
        target = head.target
        known = _TARGETS.get(target)
        if known is not None:
            raw_path, query, path = known
        # `bytes.find` rather than `in`: on CPython 3.11 `b"x" in data` first tries the
        # argument as an integer and builds (then drops) a TypeError, ~2k instructions.
        elif target[:1] == b"/" and target.find(b"%") == -1 and target.find(b"#") == -1 and target.isascii():
            # The common case, without the general parsing: an ASCII origin-form target.
            raw_path, _, query = target.partition(b"?")
            path = raw_path.decode("ascii")
            if len(_TARGETS) < _TARGETS_LIMIT and len(target) <= _TARGET_MAX:
                _TARGETS[target] = (raw_path, query, path)
        else:
            raw_path, query = split_target(head)
            path = decode_path(raw_path)
        root_path = self.root_path
        if root_path:
            path = root_path + path
            raw_path = root_path.encode("utf-8") + raw_path
        headers = head.headers
        scope = self.scope_base.copy()
        scope["client"] = self.client
        version = head.http_version
        if version != "1.1":  # the base's
            scope["http_version"] = version
        scope["method"] = head.method
        scope["path"] = path
        scope["raw_path"] = raw_path
        scope["query_string"] = query
        scope["headers"] = headers
        lifespan_state = state.lifespan_state
        # A fresh dict each request, as the spec asks; most apps keep no lifespan state.
        scope["state"] = lifespan_state.copy() if lifespan_state else {}
        if self.proxy_trusted and head.forwarded:
            scope["client"], scope["scheme"] = state.proxies.forwarded(headers, self.client, self.scheme)
        if head.upgrade and self._upgrade(head, scope):
            return
        timed = state.access_log is not None or state.metrics is not None
        cycle = Http1Cycle(self, scope, head, time.perf_counter() if timed else 0.0)
        self.cycle = cycle
        # Served in the last call, or --timeout-keep-alive 0: say the connection ends with it.
        if state.shutting_down or self.keep_alive_off:
            cycle.keep_alive = False
        direct = state.direct_http1
        if direct is not None:
            # Counted as a task until it ends: the concurrency limit and shutdown see it.
            state.tasks += 1
            try:
                direct(scope, cycle)
            except Exception as exc:
                self.direct_done(cycle, exc)
            return
        task: asyncio.Task[None]
        try:
            coro = state.app(scope, cycle.receive, cycle.send)
            if self.corked is None and state.plain_tasks:
                # The task ends itself (see _run_app). Built directly, with a fixed name:
                # otherwise CPython formats a fresh "Task-N" name for every request.
                if type(coro) is not _Coroutine and not asyncio.iscoroutine(coro):
                    raise TypeError(f"a coroutine was expected, got {coro!r}")  # as asyncio.Task says
                cycle.coro = coro
                if self.eager:
                    self.starting = cycle  # its first step runs once the read is parsed
                    return
                task = _Task(self._run_app(cycle), loop=self.loop, name=TASK_NAME)
            elif state.plain_tasks:
                # Pipelined: the task ends through _task_done, which carries the stall check.
                task = _Task(coro, loop=self.loop, name=TASK_NAME)  # type: ignore[arg-type]
            else:
                task = self.loop.create_task(coro)  # type: ignore[arg-type]  # the loop's factory
        except Exception as exc:  # the app's __call__ failed before it became a task
            self._app_failed(cycle, exc)
            return
        state.tasks += 1
        INFLIGHT[task] = cycle
        cycle.task = task
        if cycle.coro is None:  # not _run_app's
            cycle.ends_by_callback = True
            task.add_done_callback(self._task_done)

    def _start_eagerly(self, cycle: Http1Cycle) -> None:
        """Run the first step of the request's app inline, as the worker's host task would
        (see protocols/eager.py): the common request is answered here, without a task."""
        hosts = self.hosts
        assert hosts is not None
        host = hosts.idle
        if host is None or host.done():
            host = hosts.new_host()
        loop = self.loop
        coro: Any = cycle.coro  # the app's, as _start_request checked
        context = copy_context()
        try:
            _enter_task(loop, host)
        except RuntimeError:  # a task is running: not called by the loop after all
            self._start_task(cycle)
            return
        INFLIGHT[host] = cycle  # for the watchdog: the request this step serves
        try:
            # next() with a default: a step that returns ends without a StopIteration to
            # raise and catch (what a task's step avoids too, in C).
            yielded = context.run(next, coro.__await__(), _RETURNED)
        except BaseException as exc:
            _leave_task(loop, host)
            del INFLIGHT[host]
            cycle.coro = None
            if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                raise
            if not isinstance(exc, asyncio.CancelledError):
                self._app_ended(cycle, exc)
            elif not cycle.response_complete:  # as _task_done takes a cancelled task
                self._app_failed(cycle, None)
            self._eager_done()
            return
        _leave_task(loop, host)
        if yielded is not _RETURNED:
            # It awaits: the host carries on with it, as this request's task.
            hosts.adopted += 1
            cycle.coro = Resumed(coro, yielded, context)
            self.state.tasks += 1
            cycle.task = hosts.adopt(self._run_app, cycle)
            # It ends through _task_done: a host cancelled before it runs (a shutdown)
            # never enters _run_app, and must still be accounted for.
            self._end_by_callback(cycle)
            return
        del INFLIGHT[host]
        hosts.finished += 1
        cycle.coro = None
        self._app_ended(cycle, None)
        self._eager_done()

    def _eager_done(self) -> None:
        state = self.state
        if state.shutting_down:
            state.check_idle()

    def _start_task(self, cycle: Http1Cycle) -> None:
        """A task for a request whose start was left to _start_eagerly."""
        task = _Task(self._run_app(cycle), loop=self.loop, name=TASK_NAME)
        self.state.tasks += 1
        INFLIGHT[task] = cycle
        cycle.task = task

    async def _run_app(self, cycle: Http1Cycle) -> None:
        """The task of a request that is not pipelined: the app, then at once what a done
        callback would do a loop turn later, in the common case (the app returned, its
        response complete). Any other end (an exception, a cancellation, no response) is
        left to _task_done, as is the end of a task that carries the pipeline's stall check.
        """
        coro = cycle.coro
        cycle.coro = None  # started: a cancellation now reaches the except clause
        try:
            await coro
        except BaseException:
            self._end_by_callback(cycle)
            raise
        if cycle.ends_by_callback:
            return
        if not cycle.response_complete:
            self._end_by_callback(cycle)
            return
        state = self.state
        state.tasks -= 1
        del INFLIGHT[cycle.task]
        if state.shutting_down:
            state.check_idle()

    def _end_by_callback(self, cycle: Http1Cycle) -> None:
        """Let `_task_done` end this cycle's task (once), from the task's outcome."""
        if not cycle.ends_by_callback:
            cycle.ends_by_callback = True
            cycle.task.add_done_callback(self._task_done)  # type: ignore[union-attr]  # set with the task

    def cancel_task(self, cycle: Http1Cycle) -> None:
        """Cancel the task serving `cycle` (the server gives up on it). A task whose first
        step has not run yet would end without entering _run_app's except clause, and leave
        its app's coroutine never awaited: it ends through _task_done, as a cancelled app."""
        task = cycle.task
        assert task is not None
        coro = cycle.coro
        if coro is not None:
            cycle.coro = None
            coro.close()
            self._end_by_callback(cycle)
        task.cancel()

    # -- requests served without a task (state.direct_http1) -----------------------------------

    def direct_to_task(self, cycle: Http1Cycle, coro: Any) -> None:
        """A request served directly needs a task after all (a streamed body, the request
        body, a file, an error): `coro` becomes its task, already counted, and ends it."""
        task = _Task(coro, loop=self.loop, name=TASK_NAME)
        INFLIGHT[task] = cycle
        cycle.task = task
        cycle.ends_by_callback = True
        task.add_done_callback(self._task_done)

    def direct_done(self, cycle: Http1Cycle, exc: BaseException | None) -> None:
        """A request served directly is over (exactly once, unless handed to a task): what
        `_task_done` does for a task."""
        state = self.state
        state.tasks -= 1
        self._app_ended(cycle, exc)
        if state.shutting_down:
            state.check_idle()

    def _upgrade_to_h2c(self, head: RequestHead) -> bool:
        """`Upgrade: h2c` (RFC 7540 §3.2; RFC 9113 deprecates it, curl still asks): answer
        101 and continue as HTTP/2, the request becoming stream 1. Only for a request
        without a body, on cleartext; otherwise the request is served as HTTP/1.1."""
        if self.scheme != "http" or self.state.config.http == "1" or head.content_length or head.chunked:
            return False
        tokens: list[bytes] = []
        settings = None
        for name, value in head.headers:
            if name == b"upgrade":
                tokens += [token.strip().lower() for token in value.split(b",")]
            elif name == b"http2-settings":
                settings = value
        if b"h2c" not in tokens or settings is None:
            return False
        self.closing = True  # the HTTP/1.1 side of this connection is over
        self.state.connections.discard(self)
        self.transport.write(_SWITCHING_TO_H2C)
        start_http2(self.state, self.transport, upgrade=(head, settings))
        return True

    def _upgrade(self, head: RequestHead, scope: dict[str, Any]) -> bool:
        """An Upgrade request (RFC 9110 §7.8): hand the connection to the protocol it names,
        if we speak it. False: serve it as plain HTTP (the app sees an ordinary request and
        the connection closes after it)."""
        state = self.state
        if state.config.websocket.engine != "none" and websocket.is_websocket_upgrade(head):
            try:
                websocket.upgrade(
                    state,
                    self.transport,
                    head,
                    scope,
                    self.client,
                    self.parser.upgrade_data,
                    self.read_paused,
                    self.write_paused,
                )
            except websocket.HandshakeRefused as exc:
                logger.info(
                    "refused a WebSocket handshake from %s: %d %s", _peer(self.client), exc.status, exc.reason
                )
                self.transport.write(exc.response())
                self.close()
                return True
            # The socket is the WebSocket's now: this object only has to let go.
            self.closing = True
            state.connections.discard(self)
            return True
        return False

    # -- called by the request cycle ---------------------------------------------------------

    def write_through(self, data: bytes) -> None:
        """Write now, after whatever is corked: streamed bodies, 100 Continue, files."""
        if self.corked is not None:
            self._uncork()
        self.transport.write(data)

    # -- pipelined responses, gathered -------------------------------------------------------

    def _cork(self) -> None:
        corked = self.corked = []
        self.write = corked.append
        self.checked = self.answered
        cycle = self.cycle
        if cycle is not None and cycle.task is not None:
            # The stall check rides on the done callback of the task that completed the
            # last response (see _stall_check): this one may be it.
            self._end_by_callback(cycle)
        if self.check_armed is None:
            self.check_armed = _SOON
            self.loop.call_soon(self._check_soon)

    def _uncork(self) -> None:
        corked = self.corked
        self.corked = None
        self.last_task = None
        self.write = self.transport.write
        if corked:
            self.transport.write(b"".join(corked) if len(corked) > 1 else corked[0])

    def _check_soon(self) -> None:
        if self.check_armed is _SOON:
            self.check_armed = None
            self._stall_check()

    def _stall_check(self) -> None:
        """Once a loop turn passes without a response completing (an app awaiting something
        slow), what is gathered goes out: pipelining never delays an answer for long.

        While corked, one check is always pending, to run after the next request's first
        step. Its carrier is free in the common case: the task that completed the last
        response ended in that same step, after queueing the next request's step, so its
        `_task_done` (the done callback every task of a pipelined request gets: only a
        request that is not pipelined ends inside its task, see _run_app) runs right after
        that step and checks. Only when that task is still running (it went on after its response, or
        the response was completed by something else) does the check cost a handle.
        A check that runs early finds no progress and uncorks: fewer responses per write,
        never a response held back.
        """
        if self.corked is None:
            return
        answered = self.answered
        if answered == self.checked:
            self._uncork()
            return
        self.checked = answered
        task = self.last_task
        # done() and still registered: its _task_done is queued and has not run yet.
        if task is not None and task.done() and task in INFLIGHT:
            self.check_armed = task
        else:
            self.check_armed = _SOON
            self.loop.call_soon(self._check_soon)

    async def drain(self) -> None:
        if not self.write_paused or self.transport.is_closing():
            return
        waiter = self.drain_waiter
        if waiter is None:
            waiter = self.drain_waiter = self.loop.create_future()
        await waiter

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()

    def response_complete(self, cycle: Http1Cycle) -> None:
        """The one place a request ends, answered by the app or by the server."""
        state = self.state
        if state.metrics is None and state.on_max_requests is None:
            state.requests += 1  # all that request_done does when nothing watches the count
        else:
            state.request_done(cycle.status, cycle.head.http_version, cycle.started_at)
        if state.access_log is not None:
            log_request(state.access_log, cycle)
        if self.cycle is not cycle:
            return  # the connection is gone already
        self.answered += 1
        if self.corked is not None:
            self.last_task = cycle.task
        self.cycle = None
        # The exact time, not the housekeeping clock: that may be half a second old, and a
        # short --timeout-keep-alive would then close a connection right after its response.
        self.idle_since = time.monotonic()
        if self.parser.in_head:  # part of the next head is here already: its clock runs
            self.head_since = state.now
        if (
            not cycle.keep_alive
            or not cycle.body_complete  # unread body still in flight: cannot find the next request
            or (cycle.expect_continue and not cycle.continue_sent)
            or self.closing
            or state.shutting_down
        ):
            # Unread request bytes may still be on their way: linger rather than reset them.
            self.close(linger=not cycle.body_complete or bool(self.parser.buffered))
            return
        if self.read_paused:
            self.resume_reading()
        if self.parser.buffered or self.parser.dead:
            # A dead parser may hold the error for a request pipelined behind this one.
            self._pump()
        elif self.corked is not None:
            self._uncork()  # the pipeline is drained

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """An app task ended: account for it and deal with its failures."""
        state = self.state
        state.tasks -= 1
        cycle: Http1Cycle = INFLIGHT.pop(task)  # type: ignore[assignment]  # registered with its task
        if task.cancelled():
            if not cycle.response_complete:
                self._app_failed(cycle, None)
        else:
            self._app_ended(cycle, task.exception())
        if task is self.check_armed:
            self.check_armed = None
            self._stall_check()
        if state.shutting_down:
            state.check_idle()

    def _app_ended(self, cycle: Http1Cycle, exc: BaseException | None) -> None:
        """An app is over, in its task or served directly: what it left unanswered is answered."""
        if exc is not None:
            self._app_failed(cycle, exc)
        elif not cycle.response_complete:
            self._app_returned_early(cycle)

    # -- errors -----------------------------------------------------------------------------

    def _app_failed(self, cycle: Http1Cycle, exc: BaseException | None) -> None:
        if isinstance(exc, ClientDisconnected) or cycle.disconnected:
            return  # the client left; nothing to answer and nothing the app did wrong
        if exc is not None:
            logger.error(
                "Exception in application (%s %s)",
                cycle.method,
                cycle.path,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
        if cycle.response_complete:
            return  # the answer is out already: log only, leave the connection alone
        self._end_failed_cycle(cycle)

    def _app_returned_early(self, cycle: Http1Cycle) -> None:
        if cycle.disconnected:
            return
        if cycle.response_started and cycle.head_written:
            logger.error(
                "ASGI app returned without completing the response (%s %s)", cycle.method, cycle.path
            )
        else:
            logger.error("ASGI app returned without sending a response (%s %s)", cycle.method, cycle.path)
        self._end_failed_cycle(cycle)

    def _end_failed_cycle(self, cycle: Http1Cycle) -> None:
        if self.transport.is_closing():
            return
        if cycle.head_written:
            # Part of a response is out already; the only honest end is to cut it short.
            self.transport.abort()
            return
        cycle.response_started = True
        cycle.status = 500
        cycle.keep_alive = False
        self.write_through(simple_response(500, extra=self.state.head_extra_block))
        cycle.response_complete = True
        self.response_complete(cycle)

    def _refuse(self, status: int, reason: str) -> None:
        """Answer a request we will not serve, then close the connection."""
        logger.info("refused a request from %s: %d %s", _peer(self.client), status, reason)
        cycle = self.cycle
        if cycle is not None:
            # A broken body under a request the app is serving: the app's response must not
            # follow ours, and once its head is out ours cannot be sent at all.
            self.cycle = None
            cycle.on_disconnect()
            if cycle.head_written:
                self.closing = True
                self.transport.abort()
                return
        if not self.transport.is_closing():
            self.write_through(
                simple_response(status, (reason + "\n").encode("utf-8"), extra=self.state.head_extra_block)
            )
            self.close(linger=True)  # the rest of a refused request may still be arriving
        self.closing = True

    def close(self, *, linger: bool = False) -> None:
        """Close after what is written goes out. With `linger`, half-close first and drop
        whatever the client still sends for a moment: closing a socket with unread data
        sends a reset, which can destroy the response before the client reads it."""
        if self.closing and (self.lingering or self.transport.is_closing()):
            return
        if self.corked is not None:
            self._uncork()
        self.closing = True
        self.closing_since = self.state.now
        if linger and self.transport.can_write_eof():
            self.lingering = LINGER_BYTES
            self.transport.write_eof()
        else:
            self.transport.close()

    def _fatal(self, what: str) -> None:
        logger.exception("%s; closing the connection from %s", what, self.client)
        self.closing = True
        self.transport.abort()

    # -- the connection interface (steadyloop.protocols.base.Connection) ---------------------

    def is_idle(self) -> bool:
        return self.cycle is None

    def abort(self) -> None:
        self.transport.abort()

    def check_timeouts(self, now: float) -> None:
        if self.closing_since:  # close() was called
            if self.lingering:
                if now - self.closing_since >= LINGER_SECONDS:
                    self.lingering = 0  # lingered long enough; what arrives now may be reset
                    self.closing_since = now
                    self.transport.close()
            elif now - self.closing_since >= CLOSE_GRACE:
                self.transport.abort()  # a client that does not take its last response
            return
        timeouts = self.state.config.timeouts
        cycle = self.cycle
        if cycle is not None:
            if timeouts.write and self._write_stalled(now, timeouts.write):
                self._write_timed_out(cycle, timeouts.write)
                return
            if (
                not cycle.body_complete
                and timeouts.body_read
                and now - self.data_since >= timeouts.body_read
                and not self.read_paused  # paused by us: the app is slow, not the client
                and not (cycle.expect_continue and not cycle.continue_sent)  # client waits for us
            ):
                # A declared body that stops arriving would hold the app (and, for WSGI, a
                # pool thread) forever: the app hears http.disconnect, the client a 408.
                self._refuse(408, "request body not received in time")
            return
        if self.closing:
            return
        if self.head_since is not None:
            if now - self.head_since >= timeouts.header_read:
                # Slowloris: a head that trickles in never ties up the connection for long.
                self._refuse(408, "request head not received in time")
        elif now - self.idle_since >= timeouts.keep_alive:
            self.close()

    def _write_stalled(self, now: float, limit: float) -> bool:
        """Has the client taken none of the response for `limit` seconds? Progress, not total
        time: a slow download that moves lives, however long it takes."""
        size = self.transport.get_write_buffer_size()
        if size == 0 or size < self.write_buffered or not self.write_buffered:
            self.write_stall_since = now  # nothing owed, bytes taken, or the first sweep to wait
        self.write_buffered = size
        return now - self.write_stall_since >= limit

    def _write_timed_out(self, cycle: Http1Cycle, limit: float) -> None:
        logger.info(
            "write timeout: %s took no response bytes for %ss; aborting %s %s",
            _peer(self.client),
            limit,
            cycle.method,
            cycle.path,
        )
        cycle.cut_short = "write timeout"
        if self.state.access_log is not None:
            log_request(self.state.access_log, cycle)  # the response will never complete: log it now
        self.cycle = None
        cycle.on_disconnect()  # the app hears http.disconnect; its send() raises
        self._wake_drain()
        self.closing = True
        self.transport.abort()

    def shutdown(self) -> None:
        """Server shutdown: close now if idle, else after the response in progress."""
        if self.cycle is None:
            self.close()
        else:
            self.closing = True
            # Say so in the response head, if it is not out yet, so that the client does not
            # send another request down a connection about to close.
            self.cycle.keep_alive = False


# check_armed: the stall check is a call_soon handle (see _stall_check).
_SOON: object = object()
# The parser of every connection between requests (see data_received): never fed, so
# what it says (nothing buffered, no error, not in a head) is always true of it.
RESTING: Final = RequestParser()


# What an app's first step gives back when it returned (see _start_eagerly).
_RETURNED: object = object()


def _not_connected(data: bytes) -> None:
    raise RuntimeError("write before connection_made")


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "unix socket"
