"""A tiny HTTP/1.1 client over a raw socket, for tests that must see the exact bytes.

client = RawClient.connect(port)
client.send(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
response = client.response()          # status, headers, body (length, chunked or close)
client.assert_closed()                # the server closed: recv gives b"" before a deadline
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field


@dataclass
class Response:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    raw_head: bytes = b""
    chunks: list[bytes] = field(default_factory=list)

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_all(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key == name]


class RawClient:
    def __init__(self, sock: socket.socket, timeout: float = 10.0) -> None:
        self.sock = sock
        self.timeout = timeout
        self.buffer = b""
        sock.settimeout(timeout)

    @classmethod
    def connect(cls, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> RawClient:
        return cls(socket.create_connection((host, port), timeout=timeout), timeout)

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(262144)
        if not data:
            raise EOFError(f"connection closed; buffered {self.buffer[:200]!r}")
        self.buffer += data

    def read_until(self, separator: bytes) -> bytes:
        while separator not in self.buffer:
            self._fill()
        data, _, self.buffer = self.buffer.partition(separator)
        return data + separator

    def read_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def read_to_close(self) -> bytes:
        while True:
            try:
                self._fill()
            except EOFError:
                break
        data, self.buffer = self.buffer, b""
        return data

    def response(self, *, head_request: bool = False) -> Response:
        """Read one response (skipping nothing: a 100 Continue is returned as itself)."""
        raw_head = self.read_until(b"\r\n\r\n")
        lines = raw_head[:-4].split(b"\r\n")
        version, status, reason = [*lines[0].split(b" ", 2), b""][:3]
        assert version == b"HTTP/1.1", lines[0]
        headers = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            assert colon, line
            headers.append((name.lower(), value.strip()))
        response = Response(int(status), reason, headers, raw_head=raw_head)
        code = response.status
        if head_request or code < 200 or code in (204, 304):
            return response
        te = response.header(b"transfer-encoding")
        length = response.header(b"content-length")
        if te is not None:
            assert te == b"chunked", te
            assert length is None, "both Content-Length and Transfer-Encoding"
            while True:
                size_line = self.read_until(b"\r\n")
                size = int(size_line[:-2].split(b";")[0], 16)
                if size == 0:
                    self.read_until(b"\r\n")  # no trailers from us
                    break
                chunk = self.read_exact(size)
                assert self.read_exact(2) == b"\r\n"
                response.chunks.append(chunk)
            response.body = b"".join(response.chunks)
        elif length is not None:
            response.body = self.read_exact(int(length))
        else:
            response.body = self.read_to_close()
        return response

    def request(self, method: bytes = b"GET", path: bytes = b"/", body: bytes = b"", **kw: bytes) -> Response:
        headers = b"Host: test\r\n"
        if body or method in (b"POST", b"PUT"):
            headers += b"Content-Length: %d\r\n" % len(body)
        for name, value in kw.items():
            headers += name.replace("_", "-").encode() + b": " + value + b"\r\n"
        self.send(method + b" " + path + b" HTTP/1.1\r\n" + headers + b"\r\n" + body)
        return self.response(head_request=method == b"HEAD")

    def closed_within(self, timeout: float = 5.0) -> bool:
        """True when the server closes (EOF or reset) before `timeout`; False on data or silence."""
        if self.buffer:
            return False
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                return True
            except TimeoutError:
                return False
            finally:
                self.sock.settimeout(self.timeout)
            if not data:
                return True
            self.buffer += data
            return False

    def assert_closed(self, timeout: float = 5.0) -> None:
        assert self.closed_within(timeout), f"server did not close; got {self.buffer[:300]!r}"

    def silent_for(self, seconds: float) -> bool:
        """True when nothing arrives and the connection stays open for `seconds`."""
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(self.timeout)
        self.buffer += data
        return False


def get(port: int, path: bytes = b"/") -> Response:
    """One request on a fresh connection."""
    with RawClient.connect(port) as client:
        return client.request(b"GET", path)
