"""What is benchmarked: the cases, the server variants and their command lines."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import apps

BodyCheck = Callable[[bytes], bool]

# gunicorn's gthread worker defaults to one thread, which nobody runs; four is
# the usual "2-4 x cores" advice for the one core it gets here.
GUNICORN_THREADS = 4


@dataclass(frozen=True)
class Variant:
    key: str  # unique within the benchmark
    label: str  # shown in tables
    server: str  # what --servers selects: steadyloop, uvicorn, granian, gunicorn


VARIANTS: dict[str, Variant] = {
    v.key: v
    for v in (
        Variant("steadyloop", "steadyloop", "steadyloop"),
        Variant("steadyloop-nowd", "steadyloop --block-threshold 0", "steadyloop"),
        Variant("uvicorn", "uvicorn (uvloop, httptools)", "uvicorn"),
        Variant("granian", "granian", "granian"),
        Variant("gunicorn", f"gunicorn -k gthread --threads {GUNICORN_THREADS}", "gunicorn"),
        Variant("hypercorn", "hypercorn (uvloop)", "hypercorn"),
    )
}
SERVERS = ("steadyloop", "uvicorn", "granian", "gunicorn", "hypercorn")


def _equals(expected: bytes) -> BodyCheck:
    return lambda body: body == expected


def _json_equals(expected: object) -> BodyCheck:
    def check(body: bytes) -> bool:
        try:
            return bool(json.loads(body) == expected)
        except ValueError:
            return False

    return check


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    app: str  # attribute of bench.apps
    path: str
    connections: int
    variants: tuple[str, ...]
    baseline: str  # the variant whose requests/s the others are divided by
    check: BodyCheck
    interface: str = "asgi"
    workers: int = 1
    pipeline: int = 0  # requests per write; 0 = no pipelining
    pinned: bool = True  # server on CPU 0, wrk on CPU 1
    tls: bool = False  # HTTPS with a certificate made for the run (all servers the same one)
    h2_streams: int = 0  # > 0: HTTP/2 cleartext (prior knowledge), loaded by h2load -m N
    # "http": loaded with wrk; "ws": WebSocket echo, loaded with bench/wsload.py, and the
    # numbers are messages/s rather than requests/s.
    kind: str = "http"

    @property
    def target(self) -> str:
        return f"bench.apps:{self.app}"


_ASGI_PEERS = ("steadyloop", "uvicorn", "granian")
_WSGI_PEERS = ("steadyloop", "gunicorn", "granian")
_HELLO = _equals(apps.HELLO_BODY)
_TEN_KB = _equals(apps.TEN_KB_BODY)

CASES: dict[str, Case] = {
    c.key: c
    for c in (
        Case("a64", "raw ASGI hello world, 64 connections", "hello", "/", 64,
             _ASGI_PEERS, "uvicorn", _HELLO),
        Case("a256", "raw ASGI hello world, 256 connections", "hello", "/", 256,
             _ASGI_PEERS, "uvicorn", _HELLO),
        Case("b", "raw ASGI 10 KiB response, 64 connections", "ten_kb", "/", 64,
             _ASGI_PEERS, "uvicorn", _TEN_KB),
        Case("c", "FastAPI JSON endpoint, 64 connections", "fastapi_app", "/json", 64,
             _ASGI_PEERS, "uvicorn", _json_equals(apps.JSON_PAYLOAD)),
        Case("d", "raw ASGI hello world, 16-deep pipelining, 64 connections", "hello", "/", 64,
             _ASGI_PEERS, "uvicorn", _HELLO, pipeline=16),
        Case("e", "raw ASGI hello world, 2 workers, 128 connections, nothing pinned", "hello", "/",
             128, _ASGI_PEERS, "uvicorn", _HELLO, workers=2, pinned=False),
        Case("f", "WSGI hello world, 64 connections", "wsgi_hello", "/", 64,
             _WSGI_PEERS, "gunicorn", _HELLO, interface="wsgi"),
        Case("f10k", "WSGI 10 KiB response, 64 connections", "wsgi_ten_kb", "/", 64,
             _WSGI_PEERS, "gunicorn", _TEN_KB, interface="wsgi"),
        Case("ws", "WebSocket echo of a 64-byte text message, 32 connections (messages/s)",
             "ws_echo", "/", 32, _ASGI_PEERS, "uvicorn", _HELLO, kind="ws"),
        Case("g", "watchdog overhead: raw ASGI hello world, 64 connections", "hello", "/", 64,
             ("steadyloop", "steadyloop-nowd"), "steadyloop-nowd", _HELLO),
        Case("tls", "HTTPS (HTTP/1.1) hello world, 64 connections", "hello", "/", 64,
             _ASGI_PEERS, "uvicorn", _HELLO, tls=True),
        Case("h2c", "HTTP/2 cleartext hello world, h2load 16 connections x 8 streams", "hello", "/",
             16, ("steadyloop", "hypercorn", "granian"), "hypercorn", _HELLO, h2_streams=8),
    )
}


def missing_server(server: str) -> str | None:
    """Why a server cannot be run at all here, or None. steadyloop is tried regardless:
    whether it starts is found out by starting it."""
    module = {"uvicorn": "uvicorn", "granian": "granian", "gunicorn": "gunicorn",
              "hypercorn": "hypercorn"}.get(server)
    if module is not None and importlib.util.find_spec(module) is None:
        return f"{module} is not installed"
    return None


def _script(name: str) -> str:
    # The console script installed next to this interpreter (same venv).
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


def server_argv(variant: str, case: Case, host: str, port: int,
                certs: tuple[str, str] | None = None) -> list[str]:
    """The command line that serves `case` with `variant` on host:port; `certs` (certificate
    file, key file) for a TLS case."""
    if case.tls and certs is None:
        raise ValueError(f"case {case.key} needs a certificate and key")
    cert, key = certs or ("", "")
    py = sys.executable
    if variant in ("steadyloop", "steadyloop-nowd"):
        argv = [py, "-m", "steadyloop", case.target, "--host", host, "--port", str(port),
                "--no-access-log", "--log-level", "warning"]
        if case.workers != 1:
            argv += ["--workers", str(case.workers)]
        if case.interface == "wsgi":
            argv += ["--interface", "wsgi"]
        if variant == "steadyloop-nowd":
            argv += ["--block-threshold", "0"]
        if case.tls:
            argv += ["--ssl-certfile", cert, "--ssl-keyfile", key]
        return argv
    if variant == "uvicorn":
        if case.interface != "asgi":
            raise ValueError("uvicorn is only benchmarked as an ASGI server")
        argv = [py, "-m", "uvicorn", case.target, "--host", host, "--port", str(port),
                "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                "--log-level", "warning"]
        if case.kind == "ws":
            argv += ["--ws", "websockets-sansio"]  # its fastest WebSocket engine
        if case.workers != 1:
            argv += ["--workers", str(case.workers)]
        if case.tls:
            argv += ["--ssl-certfile", cert, "--ssl-keyfile", key]
        return argv
    if variant == "granian":
        # Its fastest sensible settings for one Python thread per worker: HTTP/1
        # only, no websockets, uvloop, and the single-threaded Rust runtime
        # (its default for ASGI/WSGI is the multi-threaded one, which only
        # adds hand-offs when the worker is pinned to one CPU; measured here as
        # within noise of it).
        argv = [_script("granian"), "--interface", case.interface, "--host", host,
                "--port", str(port), "--workers", str(case.workers),
                "--http", "2" if case.h2_streams else "1",
                "--ws" if case.kind == "ws" else "--no-ws", "--loop", "uvloop", "--runtime-mode", "st",
                "--no-access-log", "--log-level", "warning"]
        if case.pipeline:
            # Its (experimental) write aggregation for pipelined responses:
            # about 15% more requests/s on case d here, and no use elsewhere.
            argv.append("--http1-pipeline-flush")
        if case.tls:
            argv += ["--ssl-certificate", cert, "--ssl-keyfile", key]
        return [*argv, case.target]
    if variant == "hypercorn":
        # Serves h2c by prior knowledge on a cleartext port; no access log unless asked.
        return [_script("hypercorn"), "--bind", f"{host}:{port}", "--worker-class", "uvloop",
                "--workers", str(case.workers), "--log-level", "warning", case.target]
    if variant == "gunicorn":
        if case.interface != "wsgi":
            raise ValueError("gunicorn is only benchmarked as a WSGI server")
        return [_script("gunicorn"), "-k", "gthread", "--threads", str(GUNICORN_THREADS),
                "--workers", str(case.workers), "--bind", f"{host}:{port}",
                "--log-level", "warning", case.target]
    raise ValueError(f"unknown variant {variant!r}")
