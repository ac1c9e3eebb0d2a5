"""The loop watchdog in a real server: `python -m steadyloop` as a subprocess, real
HTTP requests, reports read from the server's real output.

The app under test is defined in this file (the server imports it as
`tests.e2e.test_watchdog_e2e:app`), so a report must name this file and a line in it.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi import FastAPI

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
THIS = os.path.relpath(os.path.abspath(__file__), REPO)
APP = "tests.e2e.test_watchdog_e2e:app"

# -- the app --------------------------------------------------------------------------

app = FastAPI()
app_log = logging.getLogger("watchdog_e2e.app")


def _app_log_to_stdout() -> None:
    """The story's service: an app logger with its own handler on stdout."""
    if not app_log.handlers:
        app_log.addHandler(logging.StreamHandler(sys.stdout))
        app_log.setLevel(logging.INFO)
        app_log.propagate = False


@app.get("/async-sleep")
async def async_sleep() -> dict[str, bool]:
    time.sleep(0.3)
    return {"ok": True}


@app.get("/sync-sleep")
def sync_sleep() -> dict[str, bool]:
    time.sleep(0.3)  # a plain `def` endpoint: Starlette runs it on a thread
    return {"ok": True}


@app.get("/short")
async def short() -> dict[str, bool]:
    time.sleep(0.02)
    return {"ok": True}


@app.get("/many")
async def many() -> dict[str, bool]:
    time.sleep(0.05)
    return {"ok": True}


@app.get("/cpu")
async def cpu() -> dict[str, int]:
    deadline = time.monotonic() + 0.4
    n = 0
    while time.monotonic() < deadline:
        n += 1
    return {"n": n}


@app.get("/log")
async def log_lines() -> dict[str, bool]:
    _app_log_to_stdout()
    for i in range(3000):
        app_log.info("async log line %d %s", i, "x" * 80)
    return {"ok": True}


@app.get("/sentinel")
async def sentinel() -> dict[str, bool]:
    time.sleep(0.5)  # well over any threshold used here, so the watchdog surely samples it
    return {"ok": True}


def _line_of(fn: Callable[..., object], text: str) -> int:
    """The line in this file of `text` inside `fn` (so edits above don't break the tests)."""
    code = fn.__code__
    with open(__file__) as f:
        lines = f.read().splitlines()
    for number in range(code.co_firstlineno, len(lines) + 1):
        if text in lines[number - 1]:
            return number
    raise AssertionError(f"{text!r} not found in {fn.__name__}")


# -- harness --------------------------------------------------------------------------


class Output:
    """Everything a pipe says, read by a thread, waitable."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._data = b""
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def start(self) -> Output:
        self._thread.start()
        return self

    def _read(self) -> None:
        while chunk := os.read(self._fd, 65536):
            with self._cond:
                self._data += chunk
                self._cond.notify_all()
        with self._cond:
            self._data += b"\0EOF"
            self._cond.notify_all()

    @property
    def text(self) -> str:
        with self._cond:
            return self._data.decode(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        regex = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = regex.search(self._data.decode(errors="replace"))
                if found:
                    return found
                left = deadline - time.monotonic()
                assert left > 0 and not self._data.endswith(b"\0EOF"), (
                    f"{pattern!r} never appeared; output:\n{self._data.decode(errors='replace')}"
                )
                self._cond.wait(left)

    def join(self) -> None:
        self._thread.join(10)
        assert not self._thread.is_alive()


def wait_either(outputs: list[Output], pattern: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(re.search(pattern, o.text, re.M) for o in outputs):
        assert time.monotonic() < deadline, f"{pattern!r} never appeared"
        with contextlib.suppress(AssertionError):
            outputs[0].wait_for(pattern, timeout=0.05)


class Running:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, err: Output) -> None:
        self.proc = proc
        self.url = url
        self.err = err

    def get(self, path: str, timeout: float = 30.0) -> httpx.Response:
        response = httpx.get(self.url + path, timeout=timeout)
        assert response.status_code == 200, response.text
        return response


@contextlib.contextmanager
def server(*flags: str, stdout: int = subprocess.DEVNULL) -> Iterator[Running]:
    """`python -m steadyloop APP` on a listening socket this test made (no port races)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    env = {**os.environ, "PYTHONPATH": REPO}
    env.pop("PYTHONUNBUFFERED", None)  # stdout to a pipe stays block-buffered, as in production
    args = [sys.executable, "-m", "steadyloop", APP, "--fd", str(sock.fileno())]
    proc = subprocess.Popen(
        [*args, "--no-access-log", *flags],
        cwd=REPO,
        env=env,
        pass_fds=[sock.fileno()],
        stdout=stdout,
        stderr=subprocess.PIPE,
    )
    sock.close()
    assert proc.stderr is not None
    err = Output(proc.stderr.fileno()).start()
    try:
        err.wait_for("serving on")
        yield Running(proc, url, err)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        err.join()
        proc.stderr.close()


REPORT = r"event loop blocked for (?P<duration>[0-9.]+) s, running GET (?P<path>\S+) \(request [^)]+\)"


def reports(text: str, path: str) -> list[re.Match[str]]:
    return [m for m in re.finditer(REPORT, text) if m["path"] == path]


def sync_point(srv: Running) -> None:
    """A reported block of its own: the watchdog reports blocks in order, so every
    earlier block has been reported (or not) by the time this one is."""
    srv.get("/sentinel")
    srv.err.wait_for(REPORT.replace(r"(?P<path>\S+)", "/sentinel"))


# -- tests ----------------------------------------------------------------------------


def test_async_endpoint_that_sleeps_gives_one_report_with_file_line_and_path() -> None:
    with server() as srv:
        srv.get("/async-sleep")
        srv.err.wait_for(REPORT.replace(r"(?P<path>\S+)", "/async-sleep"))
        sync_point(srv)
        text = srv.err.text

    (report,) = reports(text, "/async-sleep")
    assert 0.3 <= float(report["duration"]) <= 0.5
    line = _line_of(async_sleep, "time.sleep(0.3)")
    head = text[report.start() :].splitlines()[0]
    assert head.endswith(f"at {THIS}:{line} in async_sleep"), head
    assert f"> {THIS}:{line} in async_sleep" in text


def test_sync_endpoint_that_sleeps_gives_no_report() -> None:
    with server() as srv:
        srv.get("/sync-sleep")
        sync_point(srv)
        text = srv.err.text
    assert reports(text, "/sync-sleep") == []
    assert "in sync_sleep" not in text


def test_cpu_bound_async_endpoint_is_named() -> None:
    with server() as srv:
        srv.get("/cpu")
        report = srv.err.wait_for(REPORT.replace(r"(?P<path>\S+)", "/cpu"))
        text = srv.err.text
    assert 0.4 <= float(report["duration"]) <= 0.7
    head = text[report.start() :].splitlines()[0]
    assert re.search(rf"at {re.escape(THIS)}:\d+ in cpu$", head), head


def test_block_shorter_than_threshold_gives_no_report() -> None:
    with server("--block-threshold", "0.15") as srv:
        srv.get("/short")
        sync_point(srv)
        text = srv.err.text
    assert reports(text, "/short") == []


def test_rate_limit_bounds_reports_and_counts_the_rest() -> None:
    started = time.monotonic()
    with server("--block-threshold", "0.02") as srv, httpx.Client(timeout=30) as client:
        for _ in range(100):  # one after another: each is a block of its own
            assert client.get(srv.url + "/many").status_code == 200
        elapsed = time.monotonic() - started
        srv.proc.send_signal(signal.SIGTERM)  # the summary is written at shutdown
        summary = srv.err.wait_for(
            r"loop watchdog: (?P<blocks>\d+) blocks?, .* (?P<reported>\d+) reported, "
            r"(?P<suppressed>\d+) suppressed by the rate limit \((?P<pending>\d+) since"
        )
        assert srv.proc.wait(15) == 0
        text = srv.err.text

    blocks, reported = int(summary["blocks"]), int(summary["reported"])
    suppressed, pending = int(summary["suppressed"]), int(summary["pending"])
    written = reports(text, "/many")
    assert blocks >= 100  # a noisy machine may add one; none is lost
    assert reported + suppressed == blocks
    assert len(written) <= reported  # (a noise block would be reported without a request)
    assert reported <= 3 + elapsed / 10 + 1  # default: a burst of 3, then one per 10 s
    said = sum(int(n) for n in re.findall(r"(\d+) block reports suppressed since the last", text))
    assert said + pending == suppressed


def _pipe_bytes(fd: int) -> int:
    buf = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return buf[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="FIONREAD/F_GETPIPE_SZ on pipes")
def test_log_sync_with_a_stalled_stdout_names_emit_and_the_app_line() -> None:
    with server("--log-sync", stdout=subprocess.PIPE) as srv:
        assert srv.proc.stdout is not None
        out_fd = srv.proc.stdout.fileno()
        capacity = fcntl.fcntl(out_fd, 1032)  # F_GETPIPE_SZ
        result: list[int] = []
        client = threading.Thread(target=lambda: result.append(srv.get("/log").status_code))
        client.start()
        # Nobody reads stdout: the app's log handler fills the pipe, then blocks the loop.
        deadline = time.monotonic() + 15
        # (Pipe pages fill unevenly: "full" is within one page of the capacity.)
        while _pipe_bytes(out_fd) < capacity - 4096:
            assert time.monotonic() < deadline, "stdout never filled up"
            client.join(0.01)
        # The scenario: the log reader stays away for half a second more, then comes back.
        stalled_until = time.monotonic() + 0.5
        while (left := stalled_until - time.monotonic()) > 0:
            client.join(left)
        out = Output(out_fd).start()
        client.join(30)
        assert result == [200]
        # The server's own log may go to stderr or, in --log-sync mode, to stdout.
        wait_either([srv.err, out], REPORT.replace(r"(?P<path>\S+)", "/log"))
        text = srv.err.text + out.text
    out.join()

    (found,) = reports(text, "/log")
    assert float(found["duration"]) >= 0.5
    line = _line_of(log_lines, "app_log.info(")
    head = text[found.start() :].splitlines()[0]
    assert f"at {THIS}:{line} in log_lines" in head, head
    assert re.search(r"stuck in logging/__init__\.py:\d+ in StreamHandler\.(emit|flush)", head), head
    assert re.search(r"logging/__init__\.py:\d+ in StreamHandler\.emit", text)
