"""Server processes for the benchmark: start, wait until they answer, stop.

Each server runs in its own session (process group), so stopping it also
stops the worker processes it forked. Readiness is an HTTP request that must
get the expected body before a deadline, never a fixed sleep: a server that
listens but cannot serve yet (or serves the wrong thing) is not "ready".
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.exceptions

BodyCheck = Callable[[bytes], bool]

_POLL_S = 0.05  # how long one readiness attempt waits on the process before retrying


class ServerStartError(RuntimeError):
    """The server exited, never answered, or answered wrongly before the deadline."""


def free_port(host: str = "127.0.0.1") -> int:
    # The port is free when we close it; another process could take it before
    # the server binds, which would show up as a start error, not a wrong result.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


class ServerProcess:
    """One server command line, run with its output going to a log file."""

    def __init__(self, label: str, argv: list[str], *, cwd: Path, env: dict[str, str],
                 log_path: Path) -> None:
        self.label = label
        self.argv = argv
        self.cwd = cwd
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # A file, not a pipe: nobody reads the server's output while wrk runs,
        # and a full pipe would block (and so slow down) a chatty server.
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, host: str, port: int, path: str, check: BodyCheck,
                   timeout_s: float, *, tls: bool = False, h2c: bool = False) -> None:
        assert self.proc is not None, "start() first"
        deadline = time.monotonic() + timeout_s
        last_error = "no answer"
        while True:
            if self.proc.poll() is not None:
                output = log_tail(self.log_path) or "(no output)"
                raise ServerStartError(f"exited with {self.proc.returncode}: {output}")
            try:
                if h2c:
                    status, body = h2c_get(host, port, path, timeout_s=1.0)
                else:
                    status, body = http_get(host, port, path, timeout_s=1.0, tls=tls)
            except (OSError, http.client.HTTPException, h2.exceptions.ProtocolError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            else:
                if status == 200 and check(body):
                    return
                if status == 200:
                    raise ServerStartError(f"unexpected body on GET {path}: {body[:80]!r}")
                last_error = f"GET {path} answered {status}"
            if time.monotonic() >= deadline:
                raise ServerStartError(f"not ready after {timeout_s:.0f} s ({last_error})")
            # The short wait is on the process itself, so an exit is seen at once.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=_POLL_S)

    def stop(self, timeout_s: float = 10.0) -> None:
        proc = self.proc
        if proc is None:
            return
        pgid = proc.pid  # start_new_session made the server its group's leader
        if proc.poll() is None:
            _signal_group(pgid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _signal_group(pgid, signal.SIGKILL)
                proc.wait()
        # Workers that outlived their supervisor still hold the port and a CPU.
        _signal_group(pgid, signal.SIGKILL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def http_get(host: str, port: int, path: str, timeout_s: float,
             tls: bool = False) -> tuple[int, bytes]:
    conn: http.client.HTTPConnection
    if tls:  # the run's own throw-away certificate: nothing to verify it against
        conn = http.client.HTTPSConnection(host, port, timeout=timeout_s,
                                           context=ssl._create_unverified_context())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def h2c_get(host: str, port: int, path: str, timeout_s: float) -> tuple[int, bytes]:
    """One GET over HTTP/2 cleartext with prior knowledge (for servers that speak only h2)."""
    engine = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding=None))
    engine.initiate_connection()
    request = [(b":method", b"GET"), (b":path", path.encode()), (b":scheme", b"http"),
               (b":authority", f"{host}:{port}".encode())]
    engine.send_headers(1, request, end_stream=True)
    status, body = 0, b""
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(engine.data_to_send())
        while True:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed before the response ended")
            for event in engine.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    engine.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, h2.events.StreamEnded):
                    return status, body
            sock.sendall(engine.data_to_send())


class Fleet:
    """Every server this run started; `stop_all` is safe to call repeatedly."""

    def __init__(self) -> None:
        self._servers: list[ServerProcess] = []

    def add(self, server: ServerProcess) -> ServerProcess:
        self._servers.append(server)
        return server

    def stop_all(self) -> None:
        while self._servers:
            self._servers.pop().stop()


@contextlib.contextmanager
def fleet() -> Iterator[Fleet]:
    """Servers started inside are stopped on the way out, also on Ctrl-C or an error."""
    servers = Fleet()
    try:
        yield servers
    finally:
        servers.stop_all()
