"""One WSGI request, on a pool thread: call the app, stream its response, always close().

PEP 3333 rules enforced here:

* `start_response(status, headers, exc_info=None)` returns `write`. A second
  call needs `exc_info`; with `exc_info` it replaces status and headers while
  nothing has been sent, and re-raises the exception once headers are out.
* Headers go out with the first non-empty body block (or when the iterable
  is exhausted), never before: until then the app may still change its mind.
* Every block is handed on as soon as the app yields it (flow control may make
  the next yield wait, never this one).
* `close()` on the iterable is called whatever happened: a client that left,
  an error, a file sent with sendfile.

An app error before headers are out becomes a 500; after, the connection is
cut short (a truncated body must not look complete). Either way it is raised
in the request's task on the loop, where the server logs it like an ASGI
app's error, and the pool thread goes on to the next request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any

from steadyloop.wsgi.exchange import BODY, END, FILE, START, Aborted, Exchange
from steadyloop.wsgi.filewrapper import FileWrapper

logger = logging.getLogger("steadyloop.error")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType]


class AppError(RuntimeError):
    """The app broke the WSGI protocol, or raised something that is not an Exception."""


class Response:
    """start_response and write() for one request; the app's view of what was sent.

    One is made per request, so it has no __init__: the fields start as these class
    defaults and `run` sets `exchange`.
    """

    exchange: Exchange
    status: int | None = None
    # Encoded; a tuple shared with the cache when the list was seen before: never changed
    # in place (a file response builds a new list to add its Content-Length).
    headers: Sequence[tuple[bytes, bytes]] = ()
    content_length: int | None = None
    headers_sent = False

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.headers_sent:
                    # "... the start_response callable must raise an error, and should
                    # re-raise using the exc_info tuple" -- PEP 3333
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self.status is not None:
            raise AppError("start_response() called a second time without exc_info")
        code = _STATUS_CODES.get(status) if type(status) is str else None
        self.status = code if code is not None else _status_code(status)
        try:
            known = _HEADER_LISTS.get(tuple(headers)) if type(headers) is list else None
        except TypeError:  # an unhashable item: not a valid header either (refused below)
            known = None
        if known is not None:
            self.headers, self.content_length = known
        else:
            self.headers, self.content_length = _encode_headers(headers)
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy write() callable: the block is on its way when this returns."""
        if self.status is None:
            raise AppError("write() called before start_response()")
        if type(data) is not bytes:
            data = _as_bytes(data)
        if data:
            self._send_headers()
            self.exchange.post(BODY, data, len(data))

    def _send_headers(self) -> None:
        if not self.headers_sent:
            self.headers_sent = True
            # No wake-up: the loop can do nothing with a head alone, and the body is next.
            self.exchange.post(START, (self.status, self.headers), wake=False)

    def finish(self) -> None:
        if self.status is None:
            raise AppError("the WSGI app returned without calling start_response()")
        self._send_headers()
        self.exchange.post(END, None)


def run(app: WSGIApp, environ: dict[str, Any], exchange: Exchange) -> None:
    """The whole request on this thread. Never raises: failures go to the exchange."""
    response = Response()
    response.exchange = exchange
    result: Iterable[bytes] | None = None
    try:
        result = app(environ, response.start_response)
        if type(result) is list or type(result) is tuple:
            _send_sequence(response, result)
        elif isinstance(result, FileWrapper) and _try_sendfile(response, result):
            pass
        else:
            write = response.write
            for block in result:
                write(block)
            response.finish()
    except Aborted:
        pass  # the client left or the server gave up; nothing to answer
    except Exception as exc:
        exchange.fail(exc)
    except BaseException as exc:  # SystemExit from a view must not stop the worker
        error = AppError(f"WSGI app raised {type(exc).__name__}: {exc}")
        exchange.fail(error.with_traceback(exc.__traceback__))
    finally:
        # A list or tuple (the common response) has no close() to call.
        close = None if type(result) is list or type(result) is tuple else getattr(result, "close", None)
        if close is not None:
            try:
                close()
            except BaseException:
                logger.exception(
                    "Exception in the WSGI response's close() (%s %s)",
                    environ.get("REQUEST_METHOD"),
                    environ.get("PATH_INFO"),
                )


def _send_sequence(response: Response, blocks: list[bytes] | tuple[bytes, ...]) -> None:
    """A response given whole (the common case): everything posted at once, one wake-up."""
    if response.status is None:
        raise AppError("the WSGI app returned without calling start_response()")
    if not response.headers_sent:
        # Head, body and end in one piece: the loop writes it with one call.
        if len(blocks) == 1 and type(blocks[0]) is bytes:
            body = blocks[0]
        else:
            body = b"".join([block if type(block) is bytes else _as_bytes(block) for block in blocks])
        response.headers_sent = True
        response.exchange.post_whole(response.status, response.headers, body)
        return
    # write() sent the head already: the rest is body, then the end.
    pieces: list[tuple[int, Any]] = []
    size = 0
    for block in blocks:
        if type(block) is not bytes:
            block = _as_bytes(block)
        if block:
            pieces.append((BODY, block))
            size += len(block)
    pieces.append((END, None))
    response.exchange.post_all(pieces, size)


def _try_sendfile(response: Response, wrapper: FileWrapper) -> bool:
    """wsgi.file_wrapper around a real file: the loop sends it with sendfile."""
    if response.status is None or response.headers_sent:
        return False
    found = wrapper.sendfile_path()
    if found is None:
        return False
    path, size = found
    if response.content_length is not None and response.content_length != size:
        return False  # the app means to send part of the file; iterate instead
    response.headers_sent = True
    headers = response.headers
    if response.content_length is None:
        # A new list: `headers` may be the cache's. HEAD answers get it too.
        headers = [*headers, (b"content-length", str(size).encode("ascii"))]
    exchange = response.exchange
    exchange.post(START, (response.status, headers), wake=False)
    exchange.post(FILE, path)
    # The app may delete the file in close(); the loop opens it by path, so wait until sent.
    exchange.flush()
    return True


# Status strings seen before -> their code: apps use a handful. Bounded, and only exact str
# keys go in (a str subclass is refused as before, so it never reaches a lookup).
_STATUS_CODES: dict[str, int] = {}
_STATUS_CODES_LIMIT = 256


def _status_code(status: str) -> int:
    if type(status) is not str:
        raise AppError(f"WSGI status must be a str like '200 OK', not {status!r}")
    code = status[:3]
    if len(code) != 3 or not code.isdigit() or (len(status) > 3 and status[3] != " "):
        raise AppError(f"invalid WSGI status {status!r}")
    number = int(code)
    if len(_STATUS_CODES) < _STATUS_CODES_LIMIT and len(status) <= _CACHED_VALUE_MAX:
        _STATUS_CODES[status] = number
    return number


# (name, value) as the app gave it -> the encoded pair. Apps send the same few headers over
# and over (Content-Type: text/html); bounded, so unique values (cookies) stop filling it.
_ENCODED: dict[tuple[str, str], tuple[bytes, bytes]] = {}
_ENCODED_LIMIT = 1024
# Whole header lists seen before (as a tuple of the app's pairs) -> (encoded pairs,
# Content-Length): most views send the same list every time, found with one lookup. Only
# lists of short (str, str) tuples go in, and only so many.
_HEADER_LISTS: dict[tuple[tuple[str, str], ...], tuple[tuple[tuple[bytes, bytes], ...], int | None]] = {}
_HEADER_LISTS_LIMIT = 256
_HEADER_LIST_MAX = 32  # items
_CACHED_VALUE_MAX = 256  # characters


def _encode_headers(headers: list[tuple[str, str]]) -> tuple[list[tuple[bytes, bytes]], int | None]:
    if type(headers) is not list:
        raise AppError(f"WSGI response headers must be a list, not {type(headers).__name__}")
    encoded: list[tuple[bytes, bytes]] = []
    content_length: int | None = None
    cacheable = len(headers) <= _HEADER_LIST_MAX
    for item in headers:
        try:
            pair = _ENCODED.get(item) if type(item) is tuple else None
        except TypeError:  # an unhashable part: not a valid header either
            pair = None
        if pair is None:
            pair = _encode_header(item)
        raw_name, raw_value = pair
        if raw_name == b"content-length" and raw_value.isdigit():
            content_length = int(raw_value)  # an invalid one is refused by the connection
        if cacheable and not (
            type(item) is tuple
            and type(item[0]) is str
            and type(item[1]) is str
            and len(item[1]) <= _CACHED_VALUE_MAX
        ):
            cacheable = False
        encoded.append(pair)
    if cacheable and len(_HEADER_LISTS) < _HEADER_LISTS_LIMIT:
        _HEADER_LISTS[tuple(headers)] = (tuple(encoded), content_length)
    return encoded, content_length


def _encode_header(item: Any) -> tuple[bytes, bytes]:
    try:
        name, value = item
        pair = (name.lower().encode("latin-1"), value.encode("latin-1"))
    except (TypeError, ValueError, AttributeError):
        # UnicodeEncodeError is a ValueError: "header values ... must be ... latin-1"
        raise AppError(f"invalid WSGI response header {item!r}") from None
    if type(item) is tuple and type(name) is str and type(value) is str and len(_ENCODED) < _ENCODED_LIMIT:
        _ENCODED[item] = pair
    return pair


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise AppError(f"WSGI response blocks must be bytes, not {type(data).__name__}")
