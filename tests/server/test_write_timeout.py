"""--timeout-write over real sockets: a client that reads nothing is cut, one that reads slowly
is not, and the access log says why a response ended early."""

from __future__ import annotations

import socket
import subprocess
import threading

from conftest import free_port, spawn, wait_until


def _stalled_client(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fill up quickly
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\n")
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    """Read everything; True once the server has reset or closed the connection."""
    sock.settimeout(0.2)
    try:
        while sock.recv(1 << 20):
            pass
        return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_a_client_that_reads_nothing_is_cut_and_the_log_says_so() -> None:
    port = free_port()
    args = ["tests.apps.basic:stream_forever", "--port", str(port), "--timeout-write", "1", "--log-sync"]
    with spawn(args, port=port, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        lines: list[str] = []
        assert proc.stdout is not None
        reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
        reader.start()
        sock = _stalled_client(port)
        try:
            wait_until(lambda: any("write timeout" in line and "aborting" in line for line in lines), 15)
            assert _closed_by_server(sock)
            wait_until(lambda: any("send raised; receive gave http.disconnect" in line for line in lines), 10)
            wait_until(
                lambda: any(
                    '"GET /stream HTTP/1.1" 200' in line and "(write timeout)" in line for line in lines
                ),
                10,
            )
        finally:
            sock.close()


def test_a_slow_reader_that_keeps_reading_is_not_cut() -> None:
    port = free_port()
    args = ["tests.apps.basic:stream_forever", "--port", str(port), "--timeout-write", "1"]
    with spawn(args, port=port, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        sock = _stalled_client(port)
        try:
            sock.settimeout(5)
            total = 0
            pace = threading.Event()
            # Three seconds of slow reading, three times the write timeout: a small read every
            # 0.1 s is progress, however slow.
            for _ in range(30):
                chunk = sock.recv(2048)
                assert chunk, "the server closed a connection that was still reading"
                total += len(chunk)
                pace.wait(0.1)
            assert total > 0
        finally:
            sock.close()
