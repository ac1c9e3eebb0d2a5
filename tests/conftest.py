"""Shared test helpers: servers on free loopback ports, waiting with deadlines.

running_server(app, **options)   an in-process server on its own loop thread
spawn(args, ...)                 `python -m steadyloop ...` as a real subprocess
wait_until(predicate, timeout)   poll a condition with a deadline (never a bare sleep)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from steadyloop.options import build_config
from steadyloop.server.loops import new_event_loop
from steadyloop.server.serve import Server, resolve_app
from steadyloop.server.sockets import bind_sockets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01) -> Any:
    """Return the first truthy value of `predicate()`, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        threading.Event().wait(interval)


@dataclass
class RunningServer:
    server: Server
    host: str
    port: int
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def connect(self, timeout: float = 5.0) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        return sock


@contextlib.contextmanager
def running_server(app: Any, **options: Any) -> Iterator[RunningServer]:
    """Serve `app` on a free 127.0.0.1 port from a thread; stopped (gracefully) on exit."""
    options.setdefault("host", "127.0.0.1")
    options.setdefault("port", 0)
    options.setdefault("access_log", False)
    options.setdefault("lifespan", "auto")
    options.setdefault("timeout_graceful_shutdown", 5.0)
    config = build_config(app, options)
    sockets = bind_sockets(config)
    port = sockets[0].getsockname()[1]
    server = Server(config, resolve_app(config))
    errors: list[BaseException] = []

    def serve() -> None:
        loop = new_event_loop(config.loop)
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.serve(sockets))
        except BaseException as exc:  # surfaced in the test thread
            errors.append(exc)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=serve, name="test-server", daemon=True)
    thread.start()
    wait_until(lambda: server.started.is_set() or not thread.is_alive(), timeout=10)
    if errors:
        raise errors[0]
    try:
        yield RunningServer(server, "127.0.0.1", port, thread)
    finally:
        server.request_exit()
        thread.join(timeout=15)
        for sock in sockets:
            sock.close()
        assert not thread.is_alive(), "server thread did not stop"
        if errors:
            raise errors[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0, proc: subprocess.Popen[Any] | None = None) -> None:
    def ready() -> bool:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server exited early with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    wait_until(ready, timeout=timeout, interval=0.05)


@contextlib.contextmanager
def spawn(
    args: list[str], *, port: int | None = None, env: dict[str, str] | None = None, **popen: Any
) -> Iterator[subprocess.Popen[Any]]:
    """`python -m steadyloop ARGS` as a subprocess; SIGTERM then SIGKILL on exit."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(
        [ROOT, os.path.join(ROOT, "tests"), full_env.get("PYTHONPATH", "")]
    )
    if env:
        full_env.update(env)
    proc = subprocess.Popen([sys.executable, "-m", "steadyloop", *args], env=full_env, cwd=ROOT, **popen)
    try:
        if port is not None:
            wait_for_port(port, proc=proc)
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    """SIGTERM (a graceful stop), then SIGKILL if it is not gone within `timeout`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(params=["uvloop", "asyncio"])
def loop_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)
