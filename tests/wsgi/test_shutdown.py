"""A WSGI view stuck forever does not keep a worker process alive past graceful shutdown."""

from __future__ import annotations

import signal
import socket
import subprocess
import time

from conftest import free_port, spawn


def test_stuck_view_does_not_hold_the_process_after_the_graceful_timeout() -> None:
    port = free_port()
    args = ["apps.wsgi_raw:app", "--port", str(port), "--timeout-graceful-shutdown", "0.5", "--no-access-log"]
    with spawn(args, port=port, stderr=subprocess.DEVNULL) as proc:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            # The view sends its first block, then waits at a gate nobody opens (for 10 s).
            sock.sendall(b"GET /gated-stream?id=never HTTP/1.1\r\nHost: x\r\n\r\n")
            received = b""
            while b"first;" not in received:
                data = sock.recv(65536)
                assert data, received
                received += data
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=8) == 0
            # Well before the stuck view's own 10 s are up.
            assert time.monotonic() - started < 8
            assert sock.recv(65536) == b""  # cut off: no last chunk, the truncation is visible
        finally:
            sock.close()
