"""Flow control for WSGI apps, measured on a real server process: memory stays flat.

The server runs as a subprocess (`spawn`) so that its resident memory can be
read with psutil while a 200 MB body streams in, or out to a client that
reads slowly. Without backpressure either would show up as ~200 MB of growth.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import psutil
import pytest
from conftest import free_port, spawn

MB = 1024 * 1024
SIZE = 200 * MB
ALLOWED_GROWTH = 40 * MB  # far below the 200 MB that moved; leaves room for allocator noise


class PeakRSS:
    """Samples a process's RSS on a thread until stopped; `growth` is peak minus baseline."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[int, int]]:
    """(pid, port) of a spawned server running apps.wsgi_raw."""
    port = free_port()
    args = ["apps.wsgi_raw:app", "--port", str(port), "--threads", "4", "--no-access-log"]
    with spawn(args, port=port) as proc:
        # Warm up: the first requests start the pool's threads and import what they need.
        for _ in range(3):
            assert httpx.post(f"http://127.0.0.1:{port}/upload", content=b"x" * MB).text == str(MB)
        yield proc.pid, port
        assert proc.poll() is None, "the server died"


def test_200mb_upload_read_in_chunks_keeps_memory_flat(server: tuple[int, int]) -> None:
    pid, server_port = server
    block = b"\0" * MB
    with PeakRSS(pid) as rss, socket.create_connection(("127.0.0.1", server_port)) as sock:
        sock.settimeout(30)
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % SIZE)
        for _ in range(SIZE // MB):
            sock.sendall(block)
        response = b""
        while not response.endswith(str(SIZE).encode()):
            data = sock.recv(65536)
            assert data, response
            response += data
    assert response.startswith(b"HTTP/1.1 200 ")
    print(f"server RSS growth during the upload: {rss.growth / MB:.1f} MB")
    assert rss.growth < ALLOWED_GROWTH, f"server grew by {rss.growth / MB:.1f} MB for a 200 MB upload"


def test_slow_reader_of_a_200mb_stream_keeps_memory_flat(server: tuple[int, int]) -> None:
    pid, server_port = server
    n = SIZE // 65536
    with PeakRSS(pid) as rss:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        try:
            sock.settimeout(10)
            sock.connect(("127.0.0.1", server_port))
            sock.sendall(b"GET /stream?n=%d&size=65536 HTTP/1.1\r\nHost: x\r\n\r\n" % n)
            received = 0
            pause = threading.Event()
            # Read about 4 MB at ~4 MB/s: a slow client, while an unthrottled app could make
            # the whole 200 MB in well under a second.
            while received < 4 * MB:
                data = sock.recv(65536)
                assert data
                received += len(data)
                pause.wait(0.015)  # the client's own pace, not a synchronisation
        finally:
            sock.close()
    print(f"server RSS growth while streaming to a slow reader: {rss.growth / MB:.1f} MB")
    assert rss.growth < ALLOWED_GROWTH, f"server grew by {rss.growth / MB:.1f} MB streaming to a slow client"
    # The server let go of the abandoned response and still serves.
    assert httpx.get(f"http://127.0.0.1:{server_port}/").text == "hello"
