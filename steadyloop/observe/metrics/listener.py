"""The metrics port's HTTP listener: small, strict, and driven by someone else's selector.

It serves three GETs -- /metrics, / (the status page) and /status.json -- one
request per connection (`Connection: close`, then a lingering close), and runs inside a selector
loop it does not own: the supervisor's single-threaded select() loop, or the
thread of `standalone.py`. Every callback it registers takes no argument and
never blocks: sockets are non-blocking, a response that does not fit the
socket buffer waits for EVENT_WRITE, a client that does not finish its
request within REQUEST_TIMEOUT is dropped (see `next_deadline` / `on_time`).

What it refuses, and how:

    a malformed request line or header   400, closed
    a head over MAX_HEAD bytes           431, closed
    a method other than GET and HEAD     405 with Allow, closed
    an unknown path                      404
    too many clients at once             closed at accept
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus

from steadyloop.config import ConfigError

logger = logging.getLogger("steadyloop.error")

MAX_HEAD = 8192  # bytes; a scraper's request is a few hundred
MAX_CLIENTS = 64
REQUEST_TIMEOUT = 10.0  # seconds for a client to send its request and take the response
# request-line = method SP request-target SP HTTP-version   -- RFC 9112 §3
_REQUEST_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+) (/[\x21-\x7e]*) HTTP/1\.[01]")
_HEADER = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e\x80-\xff]*")


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query
    headers: dict[str, str]  # lower-case names


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Response]


@dataclass(eq=False)
class _Client:
    sock: socket.socket
    deadline: float
    inbox: bytearray = field(default_factory=bytearray)
    outbox: bytes = b""
    writing: bool = False


class MetricsListener:
    def __init__(self, sock: socket.socket, handle: Handler) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.handle = handle
        self._clients: dict[int, _Client] = {}
        self._selector: selectors.BaseSelector | None = None

    def register(self, selector: selectors.BaseSelector) -> None:
        self._selector = selector
        selector.register(self.sock, selectors.EVENT_READ, self._accept)

    def fds(self) -> list[int]:
        """Descriptors a forked worker must close: they belong to the listener."""
        return [self.sock.fileno(), *self._clients]

    def next_deadline(self) -> float | None:
        return min((c.deadline for c in self._clients.values()), default=None)

    def on_time(self, now: float) -> None:
        for client in list(self._clients.values()):
            if now >= client.deadline:
                self._close(client)

    def close(self) -> None:
        for client in list(self._clients.values()):
            self._close(client)
        if self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self.sock)
        self.sock.close()

    # -- callbacks ---------------------------------------------------------------------------

    def _accept(self) -> None:
        assert self._selector is not None
        try:
            sock, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # out of descriptors, and the like: the server goes on
            logger.warning("metrics listener: accept failed: %s", exc)
            return
        if len(self._clients) >= MAX_CLIENTS:
            sock.close()
            return
        sock.setblocking(False)
        client = _Client(sock, time.monotonic() + REQUEST_TIMEOUT)
        self._clients[sock.fileno()] = client
        self._selector.register(sock, selectors.EVENT_READ, lambda: self._readable(client))

    def _readable(self, client: _Client) -> None:
        data = self._receive(client, 4096)
        if not data:
            return
        client.inbox += data
        end = client.inbox.find(b"\r\n\r\n")
        if end < 0:
            if len(client.inbox) > MAX_HEAD:
                self._respond(client, _plain(431, "request head too large"))
            return
        if end > MAX_HEAD:
            self._respond(client, _plain(431, "request head too large"))
            return
        self._respond(client, self._answer(bytes(client.inbox[:end])))

    def _writable(self, client: _Client) -> None:
        self._send(client)

    # -- the request -------------------------------------------------------------------------

    def _answer(self, head: bytes) -> Response:
        lines = head.split(b"\r\n")
        match = _REQUEST_LINE.fullmatch(lines[0])
        # "A recipient that receives whitespace between the start-line and the first
        # header field MUST either reject the message as invalid or ..." -- RFC 9112 §2.2
        if match is None or any(_HEADER.fullmatch(line) is None for line in lines[1:]):
            return _plain(400, "malformed request")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.decode("ascii").lower()] = value.strip().decode("latin-1")
        method = match.group(1).decode("ascii")
        if method not in ("GET", "HEAD"):
            return _plain(405, "only GET and HEAD", (("allow", "GET, HEAD"),))
        path = match.group(2).decode("ascii").partition("?")[0]
        try:
            response = self.handle(Request(method, path, headers))
        except Exception:
            logger.exception("metrics listener: answering %s %s failed", method, path)
            return _plain(500, "internal error")
        if method == "HEAD":
            return Response(response.status, response.content_type, b"", response.headers)
        return response

    def _respond(self, client: _Client, response: Response) -> None:
        reason = HTTPStatus(response.status).phrase
        head = [
            f"HTTP/1.1 {response.status} {reason}",
            f"content-type: {response.content_type}",
            f"content-length: {len(response.body)}",
            "connection: close",
            "cache-control: no-store",
            "x-content-type-options: nosniff",
            *(f"{name}: {value}" for name, value in response.headers),
        ]
        client.outbox = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body
        client.inbox.clear()
        self._send(client)

    def _send(self, client: _Client) -> None:
        try:
            sent = client.sock.send(client.outbox)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(client)
            return
        client.outbox = client.outbox[sent:]
        if not client.outbox:
            self._linger(client)
        elif not client.writing:
            assert self._selector is not None
            client.writing = True
            self._selector.modify(client.sock, selectors.EVENT_WRITE, lambda: self._writable(client))

    def _linger(self, client: _Client) -> None:
        """The response is out: half-close, and read (and drop) what the client still sends
        until it closes. Closing a socket with unread bytes would reset the connection,
        and the client could lose the response (a 400 or 431 sent before the rest of its
        request was read). The request deadline still closes a client that never does."""
        assert self._selector is not None
        try:
            client.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(client)
            return
        self._selector.modify(client.sock, selectors.EVENT_READ, lambda: self._drain(client))

    def _drain(self, client: _Client) -> None:
        self._receive(client, 65536)

    def _receive(self, client: _Client, size: int) -> bytes | None:
        """What the client sent; b"" after closing it (it closed, or the socket failed),
        None when there is nothing to read yet."""
        try:
            data = client.sock.recv(size)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            data = b""
        if not data:
            self._close(client)
        return data

    def _close(self, client: _Client) -> None:
        fd = client.sock.fileno()
        if fd >= 0 and self._clients.pop(fd, None) is not None and self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(client.sock)
        client.sock.close()


def _plain(status: int, text: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, "text/plain; charset=utf-8", (text + "\n").encode(), headers)


def bind(address: str, port: int) -> socket.socket:
    """The metrics port's listening socket. Anywhere but loopback is said out loud: the
    status page shows request paths and stack frames, and is meant for operators only."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(16)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"--metrics-port: cannot listen on {address}:{port}: {exc.strerror or exc}"
        ) from None
    host, bound_port = sock.getsockname()[:2]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    if _is_loopback(address):
        logger.info("metrics and status page on http://%s:%d/", shown, bound_port)
    else:
        logger.warning(
            "metrics and status page on http://%s:%d/: NOT loopback-only, anyone who can reach "
            "this address sees request paths and stack frames (--metrics-address)",
            shown,
            bound_port,
        )
    return sock


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
