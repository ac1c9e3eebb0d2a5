"""systemd, as a unit would run steadyloop: socket activation with --fd, and the notify
protocol (READY=1, WATCHDOG=1 while the loops are healthy, STOPPING=1) on a socket
this test binds itself, as systemd would."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port, spawn, stop, wait_for_port, wait_until
from tests.e2e.test_cli import child_env


class NotifySocket:
    """systemd's end of NOTIFY_SOCKET: a unix datagram socket; messages with arrival times."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, dict[str, str]]] = []

    def collect(self) -> None:
        with contextlib.suppress(TimeoutError):
            while True:
                data = self.sock.recv(4096)
                fields = dict(line.split("=", 1) for line in data.decode().splitlines())
                self.messages.append((time.monotonic(), fields))

    def wait_for(self, key: str, count: int = 1, timeout: float = 15) -> list[float]:
        def arrived() -> list[float] | None:
            self.collect()
            times = [t for t, fields in self.messages if key in fields]
            return times if len(times) >= count else None

        return list(wait_until(arrived, timeout=timeout))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NotifySocket]:
    address = str(tmp_path / "notify") if request.param == "path" else f"@steadyloop-test-{uuid.uuid4().hex}"
    sock = NotifySocket(address)
    try:
        yield sock
    finally:
        sock.close()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ready_watchdog_and_stopping_reach_the_notify_socket(
    notify_socket: NotifySocket, tmp_path: Path, workers: str
) -> None:
    port = free_port()
    env = {"NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": "400000"}  # ping every 0.2 s
    args = ["apps.switching:blocking", "--port", str(port), "--workers", workers, "--no-access-log"]
    with spawn(args, port=port, env=env, stderr=subprocess.DEVNULL) as proc:
        (ready_at,) = notify_socket.wait_for("READY")
        ready = next(fields for _, fields in notify_socket.messages if "READY" in fields)
        assert ready["MAINPID"] == str(proc.pid)  # the process systemd started says it
        notify_socket.wait_for("WATCHDOG", count=3)
        # A loop held for 1.5 s: no WATCHDOG=1 while it is stuck (a worker's heartbeat is
        # stale), and the pings resume once it runs again.
        before = len(notify_socket.wait_for("WATCHDOG"))
        blocked_at = time.monotonic()
        assert httpx.get(f"http://127.0.0.1:{port}/block?ms=1500", timeout=10).text == "ok"
        resumed = notify_socket.wait_for("WATCHDOG", count=before + 2)
        pings = [t for t in resumed if t > blocked_at]
        gaps = [b - a for a, b in zip([blocked_at, *pings[:-1]], pings, strict=True)]
        assert max(gaps) > 0.8, gaps
        proc.send_signal(signal.SIGTERM)
        notify_socket.wait_for("STOPPING")
        assert proc.wait(15) == 0
    assert ready_at < min(t for t, f in notify_socket.messages if "STOPPING" in f)
    # Workers never speak for the service: every message came from the main process.
    assert all(f.get("MAINPID", str(proc.pid)) == str(proc.pid) for _, f in notify_socket.messages)


def test_without_notify_socket_nothing_is_sent(tmp_path: Path) -> None:
    port = free_port()
    with spawn(["apps.basic:echo", "--port", str(port), "--no-access-log"], port=port) as proc:
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None, reason="needs systemd-socket-activate")
@pytest.mark.parametrize("workers", ["1", "2"])
def test_socket_activation_with_fd(workers: str) -> None:
    """systemd-socket-activate listens, starts steadyloop on the first connection with the
    socket as fd 3 (as a .socket unit would), and that connection is served."""
    port = free_port()
    env = child_env()
    # Like systemd, the activator gives the service a clean environment: pass what it needs.
    command = ["systemd-socket-activate", "-l", f"127.0.0.1:{port}", "-E", f"PYTHONPATH={env['PYTHONPATH']}"]
    command += [sys.executable, "-m", "steadyloop", "apps.basic:echo", "--fd", "3", "--workers", workers]
    proc = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for_port(port, proc=proc)  # the activator's socket: nothing has started yet
        # This first request starts the server, and is answered by it.
        response = httpx.get(f"http://127.0.0.1:{port}/activated", timeout=20)
        assert response.json()["path"] == "/activated"
        assert httpx.get(f"http://127.0.0.1:{port}/again").json()["path"] == "/again"
    finally:
        stop(proc)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""


def unit(name: str) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in Path(ROOT, "deploy", name).read_text().splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        elif line and not line.startswith("#"):
            key, _, value = line.partition("=")
            current[key] = value
    return sections


def test_the_unit_files_fit_steadyloop() -> None:
    from steadyloop.cli import make_parser
    from steadyloop.config import LogOptions, Timeouts

    service = unit("steadyloop.service")["Service"]
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    argv = service["ExecStart"].split()
    assert argv[0].endswith("/steadyloop")
    options = vars(make_parser().parse_args(argv[1:]))  # every flag in it is one of ours
    assert options["fd"] == 3  # the .socket unit's socket
    graceful = options.get("timeout_graceful_shutdown", Timeouts().graceful_shutdown)
    assert float(service["TimeoutStopSec"]) > graceful + LogOptions().drain_timeout
    socket_unit = unit("steadyloop.socket")
    assert socket_unit["Socket"]["ListenStream"]
    assert "steadyloop.socket" in unit("steadyloop.service")["Unit"]["Requires"]
