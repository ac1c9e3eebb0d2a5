"""What the terminal shows: one format for the server's and the app's records, colours on a
TTY (NO_COLOR and --use-colors/--no-use-colors respected), the start line, counted nouns."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from steadyloop import __version__
from tests.conftest import ROOT, free_port, stop, wait_for_port, wait_until
from tests.e2e.test_cli import child_env

LINE = r"\[\d{4}-\d\d-\d\d [\d:,]+\] \[\d+\] \[(?:\x1b\[[\d;]*m)?[A-Z]+(?:\x1b\[0m)?\] "


def run_on_a_terminal(args: list[str], env: dict[str, str] | None = None) -> str:
    """Serve with stderr and stdout on a pseudo-terminal; one request; SIGINT; all it printed."""
    port = free_port()
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "steadyloop", "apps.app_logging:app", "--port", str(port), *args],
        env=child_env({"TERM": "xterm", **(env or {})}),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    output = b""
    try:
        wait_for_port(port, proc=proc)
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "logged"
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(primary, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            elif proc.poll() is not None:
                break
    finally:
        stop(proc)
        os.close(primary)
    return output.decode().replace("\r\n", "\n")


def test_a_terminal_gets_colours_and_one_format_for_server_and_app() -> None:
    out = run_on_a_terminal(["--no-access-log"])
    start = re.search(
        LINE + rf"steadyloop {re.escape(__version__)} serving on http://127\.0\.0\.1:\d+ "
        r"\(Press CTRL\+C to quit\)$",
        out,
        re.M,
    )
    assert start, out
    assert "\x1b[32mINFO\x1b[0m" in out  # green INFO
    # The app configured no logging: its record is printed as the server's are, naming its logger.
    assert re.search(LINE + r"shop\.payments: card declined$", out, re.M), out
    assert "\x1b[33mWARNING\x1b[0m] shop.payments: card declined" in out


@pytest.mark.parametrize(
    ("args", "env"), [(["--no-use-colors"], {}), ([], {"NO_COLOR": "1"})], ids=["flag", "NO_COLOR"]
)
def test_colours_can_be_turned_off(args: list[str], env: dict[str, str]) -> None:
    out = run_on_a_terminal(["--no-access-log", *args], env)
    assert "serving on" in out and "card declined" in out
    assert "\x1b[" not in out


def test_use_colors_colours_a_pipe_too(tmp_path: Path) -> None:
    port = free_port()
    err = tmp_path / "stderr"
    with err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "steadyloop", "apps.app_logging:app", "--port", str(port), "--use-colors"],
            env=child_env(),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            wait_for_port(port, proc=proc)
        finally:
            stop(proc)
    assert "\x1b[32mINFO\x1b[0m" in err.read_text()


def test_supervisor_and_worker_lines_are_in_order_and_nouns_are_counted(tmp_path: Path) -> None:
    port = free_port()
    err = tmp_path / "stderr"
    args = ["apps.app_logging:app", "--port", str(port), "--workers", "1", "--worker-timeout", "30"]
    with err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "steadyloop", *args, "--no-access-log"],
            env=child_env(),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            wait_until(lambda: re.search(r"worker \d+ serving on", err.read_text()))
            proc.send_signal(signal.SIGHUP)  # a new worker, then the old one retires
            wait_until(lambda: re.search(r"worker \d+ exited", err.read_text()))
        finally:
            stop(proc)
    text = err.read_text()
    events = [
        line.split("] ", 3)[-1]
        for line in text.splitlines()
        if re.search(r"serving on|booting worker|received SIGHUP|exited", line)
    ]
    version = re.escape(__version__)
    patterns = [
        rf"steadyloop {version} supervisor \d+ serving on http://127\.0\.0\.1:\d+ with 1 worker "
        r"\(Press CTRL\+C to quit\)",
        r"booting worker (\d+)",
        r"worker (\d+) serving on http://",
        r"received SIGHUP: starting 1 new worker; the old ones stop once the new are ready",
        r"booting worker (\d+)",
        r"worker (\d+) serving on http://",
        r"worker (\d+) exited with code 0",
    ]
    assert len(events) >= len(patterns), text
    for pattern, event in zip(patterns, events[: len(patterns)], strict=True):
        assert re.match(pattern, event), text
    assert "1 workers" not in text
