"""Started with stdin, stdout (or all three) closed, as some daemon managers and `cmd <&- >&-` do.

Without fds 0-2, the first descriptors the server opens (libuv's epoll, a socket) take those
numbers; libuv asserts on closing an fd <= 2 and Python leaves sys.stdout as None. The server
must make the three valid first, serve, stop gracefully (exit 0) and lose no queued log line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, stop, wait_for_port
from tests.rawhttp import get


def _start(closing: str, args: list[str], stderr_path: Path) -> subprocess.Popen[bytes]:
    """`python ARGS` with the given descriptors closed by a bash wrapper."""
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{ROOT}:{ROOT}/tests"
    script = f'exec {closing}; exec "$0" "$@"'
    with open(stderr_path, "wb") as stderr:
        return subprocess.Popen(
            ["bash", "-c", script, sys.executable, *args], cwd=ROOT, env=env, stderr=stderr
        )


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_closed_stdin_and_stdout(tmp_path: Path, workers: int, loop: str) -> None:
    port = free_port()
    err = tmp_path / "stderr"
    args = ["-m", "steadyloop", "apps.basic:echo", "--port", str(port), "--workers", str(workers)]
    args += ["--loop", loop]
    proc = _start("0<&- 1>&-", args, err)
    try:
        wait_for_port(port, proc=proc)
        for _ in range(3):
            assert get(port, b"/closed-stdio").status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, err.read_text()
    finally:
        stop(proc)
    text = err.read_text()
    assert "Assertion" not in text and "Traceback" not in text, text
    # Logged while shutting down, so it sat in the queue when the drain began.
    assert "shutting down gracefully" in text or "stopping all workers gracefully" in text, text
    if workers > 1:
        assert "all workers stopped" in text, text


def test_all_three_closed(tmp_path: Path) -> None:
    port = free_port()
    args = ["-m", "steadyloop", "apps.basic:echo", "--port", str(port)]
    proc = _start("0<&- 1>&- 2>&-", args, tmp_path / "unused")
    try:
        wait_for_port(port, proc=proc)
        assert get(port, b"/closed-stdio").status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        stop(proc)


def test_steadyloop_run_with_closed_stdin_and_stdout(tmp_path: Path) -> None:
    port = free_port()
    err = tmp_path / "stderr"
    code = f"import sys, steadyloop; sys.exit(steadyloop.run('apps.basic:echo', port={port}))"
    proc = _start("0<&- 1>&-", ["-c", code], err)
    try:
        wait_for_port(port, proc=proc)
        assert get(port, b"/closed-stdio").status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, err.read_text()
    finally:
        stop(proc)
    assert "shutting down gracefully" in err.read_text()
