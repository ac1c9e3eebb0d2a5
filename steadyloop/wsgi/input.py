"""wsgi.input: the request body as a file-like object, read from the loop on demand.

Nothing is read from the connection until the app asks: each time the buffer
runs short, `read_chunk()` asks the loop for the next chunk the connection has
received, and the connection keeps reading from the socket only while little
is unread. A 2 GB upload read in 64 KB pieces holds a few hundred KB at a time.
`read()` with no size reads the whole body, as the app asked.

The stream ends at the end of the body (wsgi.input_terminated), so reading
past CONTENT_LENGTH, or a chunked body with no CONTENT_LENGTH, is safe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator


class InputStream:
    __slots__ = ("_buffer", "_eof", "_read_chunk")

    def __init__(self, read_chunk: Callable[[], tuple[bytes, bool]], has_body: bool = True) -> None:
        self._read_chunk = read_chunk
        self._buffer = bytearray()  # deleting from the front of a bytearray is cheap in CPython
        self._eof = not has_body

    def _fill(self) -> bool:
        """Append the next chunk to the buffer; False at the end of the body."""
        while not self._eof:
            chunk, more = self._read_chunk()
            if not more:
                self._eof = True
            if chunk:
                self._buffer += chunk
                return True
        return False

    def read(self, size: int | None = -1) -> bytes:
        buffer = self._buffer
        if size is None or size < 0:
            while self._fill():
                pass
            data = bytes(buffer)
            buffer.clear()
            return data
        while len(buffer) < size and self._fill():
            pass
        data = bytes(buffer[:size])
        del buffer[:size]
        return data

    def read1(self, size: int = -1) -> bytes:
        """At most `size` bytes, reading from the connection at most once (io's read1)."""
        if not self._buffer:
            self._fill()
        if size < 0:
            size = len(self._buffer)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        buffer = self._buffer
        limit = -1 if size is None else size
        searched = 0
        while True:
            end = buffer.find(b"\n", searched)
            if end != -1:
                end += 1
                break
            searched = len(buffer)
            if 0 <= limit <= searched or not self._fill():
                end = len(buffer)
                break
        if 0 <= limit < end:
            end = limit
        data = bytes(buffer[:end])
        del buffer[:end]
        return data

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        """Apps may close their input; the rest of the body is simply never read."""


def _no_chunk() -> tuple[bytes, bool]:
    return b"", False


# The input of every request without a body (most GETs): always at its end, with an empty
# buffer that no method changes, so one stream serves them all.
EMPTY = InputStream(_no_chunk, has_body=False)
