"""Running out of file descriptors is said (rate-limited, with the limit) and counted.

The server runs with a small RLIMIT_NOFILE and the test holds more connections open than
that. Under asyncio, accept() fails with EMFILE; under uvloop, libuv sheds the connections
it cannot take without telling anyone. Either way the server must say so, and serve again
once descriptors are free.
"""

from __future__ import annotations

import contextlib
import re
import resource
import signal
import socket
from pathlib import Path

import pytest

from tests.conftest import free_port, spawn, wait_until
from tests.rawhttp import get

LIMIT = 48


def _small_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_running_out_of_descriptors_is_said_and_counted(tmp_path: Path, loop: str) -> None:
    port = free_port()
    err_path = tmp_path / "stderr"
    clients: list[socket.socket] = []
    with open(err_path, "wb") as err:
        args = ["apps.basic:echo", "--port", str(port), "--loop", loop, "--no-access-log"]
        with spawn(args, port=port, stderr=err, preexec_fn=_small_fd_limit) as proc:
            try:
                for _ in range(LIMIT + 20):
                    with contextlib.suppress(OSError):
                        clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
                wait_until(lambda: "out of file descriptors" in err_path.read_text(), timeout=15)
            finally:
                for sock in clients:
                    sock.close()
            # Descriptors are free again: the server serves as before.
            wait_until(lambda: _served(port), timeout=15)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
    text = err_path.read_text()
    reports = re.findall(r"out of file descriptors.*", text)
    assert 1 <= len(reports) <= 2, reports  # rate-limited, not one line per failed accept
    assert f"RLIMIT_NOFILE is {LIMIT}" in reports[0], reports[0]
    assert "raise it" in reports[0]
    assert re.search(r"\(\d+ times? so far\)", reports[0]), reports[0]
    assert "Traceback" not in text, text


def _served(port: int) -> bool:
    try:
        return get(port, b"/after").status == 200
    except (OSError, EOFError):  # uvloop sheds connections it has no descriptor for
        return False
