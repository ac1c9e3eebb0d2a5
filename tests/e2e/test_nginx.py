"""steadyloop behind a real nginx, configured with deploy/nginx.conf (the file
docs/deployment.md shows), over TCP and over a Unix socket: proxy headers, keep-alive to
the upstream, unbuffered streaming, a large upload, and a reload under load that fails
no request."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
import websockets

from tests.conftest import ROOT, free_port, spawn, stop, wait_for_port, wait_until

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="needs nginx (apt-get install nginx)")

SITE = Path(ROOT, "deploy", "nginx.conf")
UPSTREAM_LINE = "server 127.0.0.1:8000;"
LISTEN_LINE = "listen 8080;"


def site_config(upstream: str, port: int) -> str:
    """deploy/nginx.conf with its two addresses (and nothing else) changed."""
    text = SITE.read_text()
    assert text.count(UPSTREAM_LINE) == 1 and text.count(LISTEN_LINE) == 1
    return text.replace(UPSTREAM_LINE, f"server {upstream};").replace(
        LISTEN_LINE, f"listen 127.0.0.1:{port};"
    )


@contextlib.contextmanager
def nginx(tmp_path: Path, upstream: str) -> Iterator[int]:
    """nginx in the foreground with its own prefix, pid, logs and temp dirs; its port."""
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    port = free_port()
    (prefix / "steadyloop.conf").write_text(site_config(upstream, port))
    temp = "\n".join(
        f"    {name}_temp_path {prefix / name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if os.geteuid() == 0 else ""  # tmp_path is root's alone
    (prefix / "nginx.conf").write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} info;\n"
        "events { worker_connections 512; }\n"
        f"http {{\n    access_log {prefix / 'access.log'};\n{temp}\n"
        f"    include {prefix / 'steadyloop.conf'};\n}}\n"
    )
    assert NGINX is not None
    command = [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, proc=proc)
        yield port
    finally:
        stop(proc)


@dataclass
class Stack:
    url: str  # nginx, where clients go
    steadyloop: subprocess.Popen[bytes]
    log: Path  # steadyloop's stdout and stderr


@contextlib.contextmanager
def stack(tmp_path: Path, transport: str, *extra: str) -> Iterator[Stack]:
    log = tmp_path / "steadyloop.log"
    if transport == "tcp":
        port = free_port()
        bind = ["--port", str(port)]
        upstream = f"127.0.0.1:{port}"
    else:
        sock = tmp_path / "steadyloop.sock"
        bind = ["--uds", str(sock), "--forwarded-allow-ips", "unix:"]
        upstream = f"unix:{sock}"
    with (
        log.open("w") as out,
        spawn(["apps.switching:behind_proxy", *bind, *extra], stdout=out, stderr=out) as proc,
    ):
        if transport == "tcp":
            wait_for_port(port, proc=proc)
        else:
            wait_until(lambda: re.search(r"serving on unix:", log.read_text()), timeout=15)
        with nginx(tmp_path, upstream) as nginx_port:
            yield Stack(f"http://127.0.0.1:{nginx_port}", proc, log)


@pytest.fixture(params=["tcp", "unix"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_proxy_headers_reach_the_app_and_the_access_log(tmp_path: Path, transport: str) -> None:
    with stack(tmp_path, transport) as s:
        # From 127.0.0.2 (all of 127/8 is loopback): nginx appends it to X-Forwarded-For.
        client = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
        with client:
            seen = client.get(f"{s.url}/whoami").json()
        assert seen["client"][0] == "127.0.0.2" and seen["scheme"] == "http"
        wait_until(lambda: "/whoami" in s.log.read_text())
        (line,) = [x for x in s.log.read_text().splitlines() if "GET /whoami" in x]
        assert line.startswith("127.0.0.2:0 - - [")


def test_keep_alive_to_the_upstream(tmp_path: Path) -> None:
    with stack(tmp_path, "tcp") as s, httpx.Client() as client:
        for _ in range(30):
            assert client.get(f"{s.url}/whoami").status_code == 200
        server = psutil.Process(s.steadyloop.pid)
        port = int(s.url.rsplit(":", 1)[1])
        upstream = [
            c
            for c in server.net_connections("tcp")
            if c.status == "ESTABLISHED" and c.raddr and c.raddr.port != port
        ]
        # Without keep-alive nginx would close each one after its response: none left open.
        assert 1 <= len(upstream) <= 2, upstream


def test_streamed_responses_are_not_buffered(tmp_path: Path, transport: str) -> None:
    gate = tmp_path / "gate"
    with (
        stack(tmp_path, transport) as s,
        httpx.stream("GET", f"{s.url}/stream", params={"gate": str(gate)}) as r,
    ):
        chunks = r.iter_raw()
        received = b""
        while b"first\n" not in received:
            received += next(chunks)  # arrives while the app still holds "second"
        assert b"second" not in received
        gate.touch()
        received += b"".join(chunks)
    assert received == b"first\nsecond\n"


def test_a_large_upload(tmp_path: Path, transport: str) -> None:
    body = os.urandom(1024 * 1024) * 24  # 24 MiB, under client_max_body_size
    with stack(tmp_path, transport) as s:
        seen = httpx.post(f"{s.url}/upload", content=body, timeout=60).json()
    assert seen == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_a_reload_under_load_fails_no_request(tmp_path: Path) -> None:
    with stack(tmp_path, "tcp", "--workers", "2", "--no-access-log") as s:
        wait_until(lambda: len(re.findall(r"worker \d+ is ready", s.log.read_text())) == 2, timeout=15)
        done = threading.Event()
        results: dict[str, int] = {"ok": 0}
        failures: list[str] = []

        def load() -> None:
            with httpx.Client(timeout=10) as client:
                while not done.is_set() and results["ok"] < 100_000:
                    try:
                        response = client.get(f"{s.url}/whoami")
                        if response.status_code == 200:
                            results["ok"] += 1
                        else:
                            failures.append(f"status {response.status_code}")
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            wait_until(lambda: results["ok"] > 50)
            s.steadyloop.send_signal(signal.SIGHUP)
            # Both old workers retired, both new ones serving.
            wait_until(lambda: len(re.findall(r"worker \d+ exited", s.log.read_text())) == 2, timeout=30)
            before = results["ok"]
            wait_until(lambda: results["ok"] > before + 50)
        finally:
            done.set()
            for thread in threads:
                thread.join(30)
        assert failures == []
        assert results["ok"] > 100


def test_a_websocket_passes_through_nginx(tmp_path: Path, transport: str) -> None:
    with stack(tmp_path, transport) as s:

        async def talk() -> list[str]:
            url = s.url.replace("http://", "ws://") + "/echo"
            async with websockets.connect(url) as ws:
                answers = []
                for text in ("one", "two", "three"):
                    await ws.send(text)
                    answers.append(str(await ws.recv()))
                return answers

        assert asyncio.run(talk()) == ["one", "two", "three"]
        wait_until(lambda: "/echo" in s.log.read_text())
        assert "101" in next(x for x in s.log.read_text().splitlines() if "/echo" in x)
