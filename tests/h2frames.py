"""Raw HTTP/2 for tests that play a misbehaving client: an `h2` client engine over a real
socket, plus frames built by hand (hyperframe) where a well-behaved engine refuses to send
them, and a frame reader that keeps reading after GOAWAY (the h2 engine stops there)."""

from __future__ import annotations

import contextlib
import socket
import time

import h2.config
import h2.connection
from hyperframe.frame import Frame, GoAwayFrame

REQUEST = [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"http"), (b":authority", b"a")]


class RawH2:
    def __init__(self, port: int, settings: dict[int, int] | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.h2.initiate_connection()
        if settings:
            self.h2.update_settings(settings)
        self.flush()
        self.buffer = b""

    def __enter__(self) -> RawH2:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def flush(self) -> None:
        self.sock.sendall(self.h2.data_to_send())

    def send_raw(self, data: bytes) -> None:
        # The server may cut us off mid-flood: what it answered is still readable.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.sock.sendall(data)

    def frames(self, timeout: float = 10.0) -> list[Frame]:
        """Every frame until the server closes the connection (or `timeout` passes)."""
        frames: list[Frame] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frame = self.next_frame(deadline - time.monotonic())
            if frame is None:
                break
            frames.append(frame)
        return frames

    def next_frame(self, timeout: float) -> Frame | None:
        """The next frame, or None once the connection is closed."""
        while True:
            if len(self.buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
                if len(self.buffer) >= 9 + length:
                    frame.parse_body(memoryview(self.buffer[9 : 9 + length]))
                    self.buffer = self.buffer[9 + length :]
                    return frame
            self.sock.settimeout(max(timeout, 0.01))
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                return None
            if not data:
                return None
            self.buffer += data


def goaway(frames: list[Frame]) -> GoAwayFrame:
    found = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert found, f"no GOAWAY among {[type(f).__name__ for f in frames]}"
    return found[-1]
