"""`python -m steadyloop` as a real subprocess: apps, binding, environment, errors, signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, free_port, spawn, wait_for_port, wait_until
from tests.rawhttp import RawClient

QUIET = ["--no-access-log", "--log-level", "warning"]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, os.path.join(ROOT, "tests"), env.get("PYTHONPATH", "")])
    env.update(extra or {})
    return env


def run_cli(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "steadyloop", *args],
        env=child_env(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def logfile() -> Iterator[Any]:
    with tempfile.TemporaryFile("w+") as file:
        yield file


def read_log(file: Any) -> str:
    file.flush()
    file.seek(0)
    return str(file.read())


# -- serving ----------------------------------------------------------------------------------


def test_no_app_serves_the_demo(logfile: Any) -> None:
    port = free_port()
    with spawn(["--port", str(port), *QUIET], port=port, stdout=logfile, stderr=logfile) as proc:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            assert client.get("/health").json() == {"status": "ok"}
            assert client.get("/async").json() == {"message": "Asynchronous logging"}
            assert client.get("/sync").json() == {"message": "Synchronous logging"}
            assert client.get("/nope").status_code == 404
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    log = read_log(logfile)
    assert "Async log:" in log and "Sync log:" in log


def test_factory(logfile: Any) -> None:
    port = free_port()
    args = ["apps.basic:make_app", "--factory", "--port", str(port), *QUIET]
    with spawn(args, port=port, stdout=logfile, stderr=logfile):
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "made by factory"


def test_app_dir(logfile: Any) -> None:
    port = free_port()
    args = ["appdir_app:app", "--app-dir", "tests/apps/elsewhere", "--port", str(port), *QUIET]
    with spawn(args, port=port, stdout=logfile, stderr=logfile):
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "from app-dir"


def test_uds(tmp_path: Path, logfile: Any) -> None:
    path = str(tmp_path / "sl.sock")
    with spawn(["apps.basic:echo", "--uds", path, *QUIET], stdout=logfile, stderr=logfile) as proc:
        wait_until(lambda: os.path.exists(path) or proc.poll() is not None, timeout=15)
        transport = httpx.HTTPTransport(uds=path)
        with httpx.Client(transport=transport, base_url="http://local") as client:
            seen = wait_until(lambda: _try_json(client, "/uds?x=1"), timeout=15)
        assert seen["path"] == "/uds" and seen["query_string"] == "x=1"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


def _try_json(client: httpx.Client, path: str) -> Any:
    try:
        return client.get(path).json()
    except httpx.TransportError:
        return None


def test_fd(logfile: Any) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    try:
        args = ["apps.basic:echo", "--fd", str(sock.fileno()), *QUIET]
        with spawn(args, pass_fds=[sock.fileno()], stdout=logfile, stderr=logfile) as proc:
            response = httpx.get(f"http://127.0.0.1:{port}/via-fd", timeout=15)
            assert response.json()["path"] == "/via-fd"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
    finally:
        sock.close()


def test_environment_variables(logfile: Any) -> None:
    port = free_port()
    env = {
        "STEADYLOOP_PORT": str(port),
        "STEADYLOOP_APP": "apps.basic:echo",
        "STEADYLOOP_ROOT_PATH": "/mounted",
        "STEADYLOOP_SERVER_HEADER": "false",
        "STEADYLOOP_HEADER": "X-From-Env: yes",
        "STEADYLOOP_ACCESS_LOG": "0",
    }
    with spawn([], port=port, env=env, stdout=logfile, stderr=logfile):
        response = httpx.get(f"http://127.0.0.1:{port}/x")
        assert response.json()["root_path"] == "/mounted"
        assert "server" not in response.headers
        assert response.headers["x-from-env"] == "yes"


def test_flag_wins_over_environment(logfile: Any) -> None:
    port = free_port()
    env = {"STEADYLOOP_PORT": "1", "STEADYLOOP_SERVER_HEADER": "false"}
    args = ["apps.basic:echo", "--port", str(port), "--server-header", *QUIET]
    with spawn(args, port=port, env=env, stdout=logfile, stderr=logfile):
        assert httpx.get(f"http://127.0.0.1:{port}/").headers["server"] == "steadyloop"


# -- errors: one clear line, non-zero, no traceback -------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--port", "abc"], {}, "--port"),
        (["--loop", "nope"], {}, "--loop"),
        (["--timeout-keep-alive", "-1"], {}, "--timeout-keep-alive"),
        (["--no-such-flag"], {}, "--no-such-flag"),
        (["--header", "novalue"], {}, "NAME:VALUE"),
        ([], {"STEADYLOOP_PORT": "abc"}, "STEADYLOOP_PORT"),
        (["nosuchmodule:app"], {}, "nosuchmodule"),
        (["apps.basic:missing"], {}, "missing"),
        (["notaspec"], {}, "module:attribute"),
    ],
)
def test_bad_invocation_is_one_clear_line(args: list[str], env: dict[str, str], needle: str) -> None:
    result = run_cli(args, env)
    assert result.returncode != 0
    output = (result.stdout + result.stderr).strip()
    assert "Traceback" not in output
    lines = output.splitlines()
    assert len(lines) == 1, output
    assert needle in lines[0] and "error" in lines[0].lower()
    assert result.stderr.strip() == output


def test_failed_startup_exits_non_zero_with_the_apps_message() -> None:
    result = run_cli(["apps.basic:failing_startup", "--port", "0", "--lifespan", "on"])
    assert result.returncode != 0
    assert "database is unreachable (test)" in result.stderr


# -- signals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_is_graceful(sig: int, tmp_path: Path, logfile: Any) -> None:
    port = free_port()
    marker = tmp_path / "shutdown"
    env = {"SHUTDOWN_MARKER": str(marker)}
    args = ["apps.basic:with_state", "--port", str(port), *QUIET]
    with spawn(args, port=port, env=env, stdout=logfile, stderr=logfile) as proc:
        with RawClient.connect(port) as idle:
            assert idle.request().body == b"hello from lifespan"
            with RawClient.connect(port) as busy:
                busy.send(b"GET /?ms=0 HTTP/1.1\r\nHost: a\r\n\r\n")
                assert busy.response().status == 200
            proc.send_signal(sig)
            idle.assert_closed(timeout=10)  # the idle keep-alive connection is closed
        assert proc.wait(15) == 0
    assert marker.read_text() == "shutdown ran"  # lifespan shutdown ran


def test_in_flight_request_finishes_on_sigterm(tmp_path: Path, logfile: Any) -> None:
    port = free_port()
    started = tmp_path / "started"
    args = ["apps.basic:slow", "--port", str(port), *QUIET]
    with spawn(args, port=port, env={"STARTED_LOG": str(started)}, stdout=logfile, stderr=logfile) as proc:
        with RawClient.connect(port) as client:
            client.send(b"GET /?ms=700 HTTP/1.1\r\nHost: a\r\n\r\n")
            wait_until(lambda: started.exists() and started.read_text().count("\n") == 1)
            proc.send_signal(signal.SIGTERM)
            response = client.response()
            assert response.status == 200 and response.body == b"done /"
        assert proc.wait(15) == 0


def test_second_sigint_forces_exit(tmp_path: Path, logfile: Any) -> None:
    port = free_port()
    started = tmp_path / "started"
    args = ["apps.basic:slow", "--port", str(port), "--timeout-graceful-shutdown", "60", *QUIET]
    env = {"STARTED_LOG": str(started)}
    with (
        spawn(args, port=port, env=env, stdout=logfile, stderr=logfile) as proc,
        RawClient.connect(port) as client,
    ):
        client.send(b"GET /?ms=60000 HTTP/1.1\r\nHost: a\r\n\r\n")
        wait_until(lambda: started.exists())
        proc.send_signal(signal.SIGINT)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(0.5)  # the first one waits for the request...
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(10)  # ...the second does not
        assert time.monotonic() - start < 5
        assert client.closed_within(5)


def test_sigterm_under_load_fails_no_in_flight_request(tmp_path: Path, logfile: Any) -> None:
    """20 clients with requests in flight (~0.3 s each); SIGTERM; every one of them completes."""
    port = free_port()
    started = tmp_path / "started"
    clients = 20
    args = ["apps.basic:slow", "--port", str(port), *QUIET]
    with spawn(args, port=port, env={"STARTED_LOG": str(started)}, stdout=logfile, stderr=logfile) as proc:
        results: list[Any] = [None] * clients
        connections = [RawClient.connect(port) for _ in range(clients)]
        try:

            def worker(i: int) -> None:
                try:
                    results[i] = connections[i].response().status
                except Exception as exc:
                    results[i] = exc

            for i, conn in enumerate(connections):
                conn.send(b"GET /load/%d?ms=300 HTTP/1.1\r\nHost: a\r\n\r\n" % i)
            threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
            for thread in threads:
                thread.start()
            # every request is in the app before the signal
            wait_until(lambda: started.exists() and started.read_text().count("\n") == clients)
            proc.send_signal(signal.SIGTERM)
            for thread in threads:
                thread.join(20)
        finally:
            for conn in connections:
                conn.close()
        failed = [r for r in results if r != 200]
        assert failed == []
        assert proc.wait(15) == 0
        with pytest.raises(AssertionError):
            wait_for_port(port, timeout=0.5)  # no longer listening


def test_programmatic_run(logfile: Any) -> None:
    """`steadyloop.run(app, **options)` with options named like the flags."""
    port = free_port()
    code = (
        "import steadyloop, sys; "
        f"sys.exit(steadyloop.run('apps.basic:echo', port={port}, access_log=False, "
        "root_path='/prog', header=[('X-Run', 'api')]))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=child_env(), cwd=ROOT, stdout=logfile, stderr=logfile
    )
    try:
        wait_for_port(port, proc=proc)
        response = httpx.get(f"http://127.0.0.1:{port}/p")
        assert response.json()["root_path"] == "/prog" and response.headers["x-run"] == "api"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_programmatic_run_rejects_unknown_options() -> None:
    import steadyloop
    from steadyloop.config import ConfigError

    with pytest.raises(ConfigError, match="no_such_option"):
        steadyloop.run("apps.basic:echo", no_such_option=1)
