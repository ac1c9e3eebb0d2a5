"""The worker's side of supervision: what a forked child runs, and what it tells its parent.

The child talks to the supervisor over one pipe of short lines:

    R            listening: the supervisor may retire an older worker now
    M            --max-requests reached: draining, start my replacement
    E <message>  failed before it was ready (the app did not import, lifespan
                 startup failed); one line, shown to the operator

and is watched by it through the heartbeat slot, stamped by the watchdog's
timer on the child's own event loop (so a stuck loop stops stamping even if
other threads run on; see steadyloop.observe.watchdog). The lifeline pipe's
EOF tells the child that the supervisor is gone.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import socket
from dataclasses import dataclass

from steadyloop.config import Config, ConfigError
from steadyloop.observe.heartbeat import Heartbeat
from steadyloop.observe.metrics.shm import StatsSlot
from steadyloop.observe.watchdog import DUMP_SIGNAL
from steadyloop.server.serve import Server, serve_process
from steadyloop.server.sockets import bind_sockets

logger = logging.getLogger("steadyloop.error")

LOGGED_WITHIN = 1.0  # seconds a ready worker waits for its log lines before saying so
LOGGED_POLL = 0.005

READY = b"R"
RECYCLING = b"M"
FAILED = b"E"


@dataclass
class WorkerLink:
    """Everything a forked worker keeps of its supervisor."""

    status_fd: int  # write end of the status pipe
    lifeline_fd: int  # read end of the lifeline pipe: EOF when the supervisor is gone
    heartbeat: Heartbeat
    stats_slot: StatsSlot | None = None  # --metrics: where this worker publishes its numbers

    def send(self, kind: bytes, text: str = "") -> None:
        line = kind + (b" " + text.encode("utf-8", "replace") if text else b"") + b"\n"
        with contextlib.suppress(OSError):  # the supervisor is gone; the lifeline will stop us
            os.write(self.status_fd, line)


class _FirstError(logging.Filter):
    """Remember the first error the server logs before it is ready: the boot failure."""

    def __init__(self) -> None:
        super().__init__()
        self.message: str | None = None
        self.armed = True

    def filter(self, record: logging.LogRecord) -> bool:
        if self.armed and self.message is None and record.levelno >= logging.ERROR:
            try:
                text = record.getMessage()
            except Exception:  # a broken format string must not break logging
                text = str(record.msg)
            lines = text.strip().splitlines()
            self.message = lines[0] if lines else text
        return True


def run_worker(config: Config, sockets: list[socket.socket] | None, link: WorkerLink) -> int:
    """Serve in a freshly forked child until told to stop; returns its exit code."""
    # The watchdog's dump signal, registered before serving too, so that the supervisor's
    # "dump your stacks" works even where the watchdog is off, and never kills a worker
    # by its default action.
    if DUMP_SIGNAL is not None:
        faulthandler.register(DUMP_SIGNAL, file=2, all_threads=True, chain=False)
    first_error = _FirstError()
    error_logger = logging.getLogger("steadyloop.error")
    error_logger.addFilter(first_error)
    ready = False

    def on_started(server: Server) -> None:
        nonlocal ready
        ready = True
        first_error.armed = False
        server.on_max_requests = lambda: link.send(RECYCLING)
        _watch_lifeline(server, link.lifeline_fd)
        _send_when_logged(server, link, READY)

    try:
        if sockets is None:  # --reuse-port: each worker binds its own socket
            sockets = bind_sockets(config, reuse_port=True)
        code = serve_process(
            config,
            sockets,
            on_started=on_started,
            heartbeat=link.heartbeat,
            stats_slot=link.stats_slot,
            is_worker=True,
        )
    except ConfigError as exc:
        first_error.message = str(exc)
        code = 1
    finally:
        error_logger.removeFilter(first_error)
    if not ready:
        link.send(FAILED, first_error.message or f"worker exited with code {code} before it was ready")
        return code or 1
    return code


def _send_when_logged(server: Server, link: WorkerLink, kind: bytes) -> None:
    """Send `kind` once this worker's queued log lines are written (within LOGGED_WITHIN),
    so that the supervisor's lines about it ("retiring the old worker") follow its own
    ("serving on") on a shared terminal, instead of overtaking them. Checked from loop
    timers: the loop never waits for the sink."""
    loop = server.loop
    pipeline = server.log_pipeline
    assert loop is not None
    deadline = loop.time() + LOGGED_WITHIN

    def check() -> None:
        if pipeline is None or pipeline.pending() == 0 or loop.time() >= deadline:
            link.send(kind)
        else:
            loop.call_later(LOGGED_POLL, check)

    check()


def _watch_lifeline(server: Server, fd: int) -> None:
    """EOF on the lifeline means the supervisor died (kill -9): drain and exit, don't linger."""
    loop = server.loop
    assert loop is not None

    def readable() -> None:
        try:
            data = os.read(fd, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            logger.warning("worker %d: the supervisor is gone, shutting down", os.getpid())
            server.request_exit()

    os.set_blocking(fd, False)
    loop.add_reader(fd, readable)
