"""Plain PEP 3333 apps for the WSGI bridge tests: one path per behaviour under test.

In-process tests steer the blocking paths through GATES (threading.Events by
name) and see close() calls through CLOSED; spawned servers only use the
paths that need no steering (/upload, /stream).
"""

from __future__ import annotations

import io
import json
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

Environ = dict[str, Any]
StartResponse = Callable[..., Any]

GATES: dict[str, threading.Event] = {}
CLOSED: dict[str, threading.Event] = {}
STARTED: dict[str, threading.Event] = {}
PROGRESS: dict[str, int] = {}  # bytes a streaming response has yielded so far
_lock = threading.Lock()


def event(table: dict[str, threading.Event], name: str) -> threading.Event:
    with _lock:
        found = table.get(name)
        if found is None:
            found = table[name] = threading.Event()
        return found


def _query(environ: Environ) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}


def _text(start_response: StartResponse, body: bytes, status: str = "200 OK") -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class Tracked:
    """An iterable response whose close() is recorded under a name."""

    def __init__(self, name: str, blocks: Iterator[bytes]) -> None:
        self.name = name
        self.blocks = blocks

    def __iter__(self) -> Iterator[bytes]:
        return self.blocks

    def close(self) -> None:
        event(CLOSED, self.name).set()


class CountingFile(io.RawIOBase):
    """A real file that counts read() calls, to tell sendfile from iteration."""

    reads = 0

    def __init__(self, path: str) -> None:
        self.file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.name = path

    def fileno(self) -> int:
        return self.file.fileno()

    def tell(self) -> int:
        return self.file.tell()

    def read(self, size: int = -1) -> bytes:
        CountingFile.reads += 1
        return self.file.read(size)

    def close(self) -> None:
        self.file.close()
        super().close()


def environ_view(environ: Environ, start_response: StartResponse) -> list[bytes]:
    shown = {k: v for k, v in environ.items() if isinstance(v, (str, bool, tuple))}
    shown["has_input"] = hasattr(environ["wsgi.input"], "read")
    shown["has_errors"] = hasattr(environ["wsgi.errors"], "write")
    shown["file_wrapper"] = environ["wsgi.file_wrapper"].__name__
    body = json.dumps(shown).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def upload(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Read the body in 64 KB pieces; answer with the byte count."""
    stream = environ["wsgi.input"]
    total = 0
    while True:
        block = stream.read(65536)
        if not block:
            break
        total += len(block)
    return _text(start_response, str(total).encode())


def lines(environ: Environ, start_response: StartResponse) -> list[bytes]:
    stream = environ["wsgi.input"]
    how = _query(environ).get("how", "readline")
    if how == "iter":
        got = list(stream)
    elif how == "readlines":
        got = stream.readlines()
    else:
        got = []
        while line := stream.readline():
            got.append(line)
    return _text(start_response, json.dumps([x.decode() for x in got]).encode())


def stream(environ: Environ, start_response: StartResponse) -> Tracked:
    """`n` blocks of `size` bytes, made as fast as the server takes them."""
    q = _query(environ)
    n, size, name = int(q.get("n", "10")), int(q.get("size", "65536")), q.get("id", "stream")
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    PROGRESS[name] = 0

    def blocks() -> Iterator[bytes]:
        block = b"x" * size
        for _ in range(n):
            PROGRESS[name] += size
            yield block

    return Tracked(name, blocks())


def gated_stream(environ: Environ, start_response: StartResponse) -> Tracked:
    """One block, then wait for the gate, then a second block: streaming is not buffering."""
    name = _query(environ)["id"]
    start_response("200 OK", [("Content-Type", "text/plain")])

    def blocks() -> Iterator[bytes]:
        yield b"first;"
        event(GATES, name).wait(10)
        yield b"second"

    return Tracked(name, blocks())


def block(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Hold a pool thread until the test opens the gate."""
    name = _query(environ)["id"]
    event(STARTED, name).set()
    event(GATES, name).wait(10)
    return _text(start_response, b"released " + name.encode())


def write_callable(environ: Environ, start_response: StartResponse) -> Tracked:
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"one;")
    write(b"")
    write(b"two;")
    return Tracked(_query(environ).get("id", "write"), iter([b"three"]))


def exc_before_headers(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise ValueError("changed my mind")
    except ValueError:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"recovered"]


def exc_after_headers(environ: Environ, start_response: StartResponse) -> list[bytes]:
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"partial")
    try:
        raise ValueError("too late")
    except ValueError:
        start_response("500 Internal Server Error", [], sys.exc_info())  # re-raises
    return [b"never"]


def error(environ: Environ, start_response: StartResponse) -> list[bytes]:
    raise ValueError("boom in a WSGI view")


def error_in_iterable(environ: Environ, start_response: StartResponse) -> Tracked:
    start_response("200 OK", [("Content-Type", "text/plain")])

    def blocks() -> Iterator[bytes]:
        yield b"partial"
        raise ValueError("boom while streaming")

    return Tracked(_query(environ).get("id", "error-iter"), blocks())


def system_exit(environ: Environ, start_response: StartResponse) -> list[bytes]:
    raise SystemExit(3)


def no_start_response(environ: Environ, start_response: StartResponse) -> list[bytes]:
    return [b"forgot"]


def bad_header(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("X-Bad", "split\r\nInjected: yes")])
    return [b"never"]


def not_bytes(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [])
    return ["text, not bytes"]  # type: ignore[list-item]


def file_view(environ: Environ, start_response: StartResponse) -> Any:
    q = _query(environ)
    path = q["path"]
    wrapper = environ["wsgi.file_wrapper"]
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    if q.get("kind") == "bytesio":
        with open(path, "rb") as f:
            return wrapper(io.BytesIO(f.read()), 4096)
    counting = CountingFile(path)
    if q.get("kind") == "offset":
        counting.file.read(10)
    return wrapper(counting, 4096)


def hello(environ: Environ, start_response: StartResponse) -> list[bytes]:
    return _text(start_response, b"hello")


ROUTES: dict[str, Callable[[Environ, StartResponse], Any]] = {
    "/environ": environ_view,
    "/upload": upload,
    "/lines": lines,
    "/stream": stream,
    "/gated-stream": gated_stream,
    "/block": block,
    "/write": write_callable,
    "/exc-before": exc_before_headers,
    "/exc-after": exc_after_headers,
    "/error": error,
    "/error-iter": error_in_iterable,
    "/exit": system_exit,
    "/no-start": no_start_response,
    "/bad-header": bad_header,
    "/not-bytes": not_bytes,
    "/file": file_view,
}


def app(environ: Environ, start_response: StartResponse) -> Any:
    view = ROUTES.get(environ["PATH_INFO"], hello)
    return view(environ, start_response)
