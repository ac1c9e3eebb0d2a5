"""HTTP/1.1 behaviour over real loopback sockets: keep-alive, pipelining, framing, 100-continue,
headers the server adds, flow control both ways, timeouts, concurrency limit, shutdown, proxies."""

from __future__ import annotations

import asyncio
import email.utils
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.apps.basic import echo, respond
from tests.conftest import RunningServer, running_server, wait_until
from tests.rawhttp import RawClient, get


@pytest.fixture(scope="module", params=["uvloop", "asyncio"])
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with running_server(echo, loop=request.param) as running:
        yield running


def scope_of(response: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(response.body)
    return result


# -- keep-alive, pipelining, bodies ---------------------------------------------------------------


def test_keep_alive_is_the_default_on_http_11(server: RunningServer) -> None:
    with RawClient.connect(server.port) as client:
        for i in range(5):
            response = client.request(b"GET", b"/n/%d" % i)
            assert response.status == 200 and scope_of(response)["path"] == f"/n/{i}"
            assert response.header(b"connection") is None
        assert client.silent_for(0.1)


def test_http_10_closes_unless_asked_to_keep_alive(server: RunningServer) -> None:
    with RawClient.connect(server.port) as client:
        client.send(b"GET /a HTTP/1.0\r\n\r\n")
        response = client.response()
        assert response.status == 200 and scope_of(response)["http_version"] == "1.0"
        client.assert_closed()
    with RawClient.connect(server.port) as client:
        for path in (b"/one", b"/two"):
            client.send(b"GET " + path + b" HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            response = client.response()
            assert response.header(b"connection") == b"keep-alive"
            assert scope_of(response)["path"] == path.decode()
        client.send(b"GET /three HTTP/1.0\r\n\r\n")
        assert scope_of(client.response())["path"] == "/three"
        client.assert_closed()


def test_connection_close_is_honoured(server: RunningServer) -> None:
    with RawClient.connect(server.port) as client:
        response = client.request(b"GET", b"/", connection=b"close")
        assert response.status == 200 and response.header(b"connection") == b"close"
        client.assert_closed()


def test_pipelining_16_requests_in_one_write(server: RunningServer) -> None:
    requests = b"".join(
        b"POST /p/%d HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s" % (i, len(b"x" * i), b"x" * i)
        if i % 3 == 0
        else b"GET /p/%d HTTP/1.1\r\nHost: a\r\n\r\n" % i
        for i in range(16)
    )
    with RawClient.connect(server.port) as client:
        client.send(requests)
        for i in range(16):
            seen = scope_of(client.response())
            assert seen["path"] == f"/p/{i}"
            assert seen["body"] == ("x" * i if i % 3 == 0 else "")
        assert client.silent_for(0.1)


def test_a_pipelined_request_that_waits_does_not_hold_back_the_answer_before(server: RunningServer) -> None:
    # The second request's app sleeps: the first answer must not wait for it.
    with RawClient.connect(server.port, timeout=30) as client:
        client.send(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\nGET /slow?ms=2000 HTTP/1.1\r\nHost: a\r\n\r\n")
        assert scope_of(client.response())["path"] == "/first"
        assert client.silent_for(0.1)  # the second is still on its way: they did not go together
        assert scope_of(client.response())["path"] == "/slow"


def test_content_length_body(server: RunningServer) -> None:
    body = bytes(range(256)) * 1000
    with RawClient.connect(server.port) as client:
        response = client.request(b"POST", b"/", body)
        assert scope_of(response)["body"].encode("latin-1") == body
        response = client.request(b"POST", b"/", b"")
        assert scope_of(response)["body"] == ""


def test_chunked_body(server: RunningServer) -> None:
    with RawClient.connect(server.port) as client:
        client.send(
            b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n1\r\n \r\n5;name=value\r\nworld\r\n0\r\nX-Trailer: 1\r\n\r\n"
        )
        assert scope_of(client.response())["body"] == "hello world"
        # and the connection is still good for the next request
        assert scope_of(client.request(b"GET", b"/next"))["path"] == "/next"


def test_chunked_body_split_byte_by_byte(server: RunningServer) -> None:
    data = (
        b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    with RawClient.connect(server.port) as client:
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(data)):
            client.send(data[i : i + 1])
        assert scope_of(client.response())["body"] == "abcde"


def test_httpx_streaming_upload_is_chunked(server: RunningServer) -> None:
    def pieces() -> Iterator[bytes]:
        for i in range(50):
            yield b"%03d," % i

    with httpx.Client(base_url=server.url) as client:
        response = client.post("/up", content=pieces())
        assert response.json()["body"] == "".join(f"{i:03d}," for i in range(50))
        headers = dict(response.json()["headers"])
        assert headers.get("transfer-encoding") == "chunked"


# -- response framing -----------------------------------------------------------------------------


async def streaming_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Streams without a length; /204, /304 and /fixed answer with bodies they must not send."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path in ("/204", "/304"):
        await send({"type": "http.response.start", "status": int(path[1:]), "headers": []})
        await send({"type": "http.response.body", "body": b"must not be sent"})
        return
    if path == "/fixed":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"11")]})
        await send({"type": "http.response.body", "body": b"hello ", "more_body": True})
        await send({"type": "http.response.body", "body": b"world"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-kind", b"stream")]})
    for i in range(5):
        await send({"type": "http.response.body", "body": b"part%d;" % i, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


@pytest.fixture(scope="module")
def streaming_server() -> Iterator[RunningServer]:
    with running_server(streaming_app) as running:
        yield running


def test_chunked_response_without_length(streaming_server: RunningServer) -> None:
    with RawClient.connect(streaming_server.port) as client:
        response = client.request()
        assert response.header(b"transfer-encoding") == b"chunked"
        assert response.header(b"content-length") is None
        assert response.chunks == [b"part%d;" % i for i in range(5)]
        assert client.silent_for(0.05)


def test_http_10_streaming_response_ends_with_close(streaming_server: RunningServer) -> None:
    with RawClient.connect(streaming_server.port) as client:
        client.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        response = client.response()
        assert response.header(b"transfer-encoding") is None
        assert response.body == b"".join(b"part%d;" % i for i in range(5))


def test_app_content_length_with_streaming(streaming_server: RunningServer) -> None:
    with RawClient.connect(streaming_server.port) as client:
        response = client.request(b"GET", b"/fixed")
        assert response.body == b"hello world" and response.header(b"transfer-encoding") is None
        assert client.request(b"GET", b"/fixed").body == b"hello world"


@pytest.mark.parametrize("status", [b"204", b"304"])
def test_no_body_on_204_and_304(streaming_server: RunningServer, status: bytes) -> None:
    with RawClient.connect(streaming_server.port) as client:
        client.send(b"GET /" + status + b" HTTP/1.1\r\nHost: a\r\n\r\nGET /fixed HTTP/1.1\r\nHost: a\r\n\r\n")
        first = client.response()
        assert first.status == int(status)
        assert first.header(b"transfer-encoding") is None
        # if the dropped body had been written, it would show up before the next status line
        assert client.response().body == b"hello world"


def test_head_has_no_body(server: RunningServer, streaming_server: RunningServer) -> None:
    for running in (server, streaming_server):
        with RawClient.connect(running.port) as client:
            client.send(b"HEAD /fixed HTTP/1.1\r\nHost: a\r\n\r\nGET /fixed HTTP/1.1\r\nHost: a\r\n\r\n")
            head = client.response(head_request=True)
            assert head.status == 200
            second = client.response()
            assert second.status == 200
            if running is streaming_server:
                assert head.header(b"content-length") == b"11"
                assert second.body == b"hello world"


# -- 100 Continue ---------------------------------------------------------------------------------


def test_100_continue_only_when_the_app_reads(server: RunningServer) -> None:
    with RawClient.connect(server.port) as client:
        client.send(b"POST /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        interim = client.response()
        assert interim.status == 100 and interim.raw_head == b"HTTP/1.1 100 Continue\r\n\r\n"
        client.send(b"hello")
        final = client.response()
        assert final.status == 200 and scope_of(final)["body"] == "hello"
        # keep-alive still works after an expect-continue exchange
        assert client.request(b"GET", b"/after").status == 200


def test_no_100_continue_when_the_app_never_reads() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await respond(send, 413, b"too big, not reading it")

    with running_server(app) as running, RawClient.connect(running.port) as client:
        client.send(
            b"PUT /upload HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n"
        )
        response = client.response()
        assert response.status == 413 and response.body == b"too big, not reading it"
        # the body was never asked for, so the connection cannot be reused: it is closed
        client.assert_closed()


# -- headers the server adds ----------------------------------------------------------------------


def test_date_and_server_headers(server: RunningServer) -> None:
    with RawClient.connect(server.port) as client:
        started = time.time()
        dates = set()
        for _ in range(30):
            response = client.request()
            assert response.header(b"server") == b"steadyloop"
            date = response.header(b"date")
            assert date is not None
            dates.add(date)
            parsed = email.utils.parsedate_to_datetime(date.decode()).timestamp()
            assert started - 3 <= parsed <= time.time() + 3
        # cached per second: 30 requests in a fraction of a second share very few values
        assert len(dates) <= int(time.time() - started) + 2


def test_no_date_no_server_and_extra_headers() -> None:
    with running_server(
        echo, date_header=False, server_header=False, header=[("X-Served-By", "node-1"), ("X-Env", "test")]
    ) as running:
        response = get(running.port)
        assert response.header(b"date") is None and response.header(b"server") is None
        assert response.header(b"x-served-by") == b"node-1" and response.header(b"x-env") == b"test"


# -- flow control ---------------------------------------------------------------------------------


def test_upload_to_an_app_that_does_not_read_stops_the_reading() -> None:
    """The server pauses reading; the client's send then blocks (bounded by kernel buffers)."""
    release = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while not release.is_set():
            await asyncio.sleep(0.02)
        size = 0
        more = True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        await respond(send, 200, b"%d" % size)

    total = 96 * 1024 * 1024
    with running_server(app) as running, RawClient.connect(running.port) as client:
        client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % total)
        client.sock.setblocking(False)
        accepted = 0
        chunk = b"u" * 65536
        stalled_since: float | None = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                accepted += client.sock.send(chunk)
                stalled_since = None
            except BlockingIOError:
                now = time.monotonic()
                stalled_since = stalled_since or now
                if now - stalled_since > 0.5:
                    break
                threading.Event().wait(0.01)
        # Kernel buffers on loopback take some megabytes; the server itself at most ~1 MB.
        print("accepted before the server stopped reading:", accepted)
        assert accepted < 48 * 1024 * 1024, accepted
        # Now let the app read: everything arrives.
        release.set()
        client.sock.setblocking(True)
        client.sock.settimeout(30)
        left = total - accepted
        while left:
            left -= client.sock.send(chunk[: min(left, len(chunk))])
        assert client.response().body == b"%d" % total


def test_response_to_a_slow_reader_blocks_send() -> None:
    """An app streaming to a client that does not read waits in `send`: memory stays bounded."""
    sent = [0]
    finished = threading.Event()
    chunk = b"d" * 65536
    total_chunks = 1024  # 64 MiB if nothing held it back

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(total_chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent[0] += len(chunk)
        await send({"type": "http.response.body", "body": b""})
        finished.set()

    with running_server(app) as running, RawClient.connect(running.port) as client:
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        last = [-1]

        def stalled() -> bool:
            now, last[0] = sent[0], sent[0]
            return now > 0 and not threading.Event().wait(0.3) and sent[0] == now

        wait_until(stalled, timeout=20)
        assert not finished.is_set()
        print("sent before send blocked:", sent[0])
        assert sent[0] < 32 * 1024 * 1024, sent[0]
        response = client.response()
        assert len(response.body) == total_chunks * len(chunk)
        assert finished.wait(10)


# -- timeouts -------------------------------------------------------------------------------------


def test_keep_alive_idle_timeout() -> None:
    with running_server(echo, timeout_keep_alive=1) as running, RawClient.connect(running.port) as client:
        assert client.request().status == 200
        start = time.monotonic()
        client.assert_closed(timeout=6)
        assert time.monotonic() - start >= 0.9


def test_idle_connection_before_any_request_times_out() -> None:
    with running_server(echo, timeout_keep_alive=1) as running, RawClient.connect(running.port) as client:
        client.assert_closed(timeout=6)


def test_header_read_timeout_is_408() -> None:
    with running_server(echo, timeout_header_read=1, timeout_keep_alive=30) as running:
        with RawClient.connect(running.port) as client:
            client.send(b"GET /slowloris HTTP/1.1\r\nHost: a\r\nX-Trickle: ")
            start = time.monotonic()
            response = client.response()
            assert response.status == 408
            assert time.monotonic() - start >= 0.9
            client.assert_closed()
        with RawClient.connect(running.port) as client:
            # A head trickled in a header at a time is still cut off: the limit is for the head.
            client.send(b"GET /slowloris HTTP/1.1\r\n")
            start = time.monotonic()
            for i in range(40):
                if client.closed_within(0.1) or client.buffer:
                    break
                client.send(b"X-%d: 1\r\n" % i)
            assert client.response().status == 408
            assert time.monotonic() - start < 3.5
        assert get(running.port).status == 200


# -- concurrency limit ----------------------------------------------------------------------------


def test_limit_concurrency_answers_503() -> None:
    with running_server(echo, limit_concurrency=2) as running:
        first, second = RawClient.connect(running.port), RawClient.connect(running.port)
        try:
            assert first.request().status == 200 and second.request().status == 200
            with RawClient.connect(running.port) as third:
                response = third.request()
                assert response.status == 503
                third.assert_closed()
            assert first.request().status == 200  # the held connections are unaffected
        finally:
            first.close()
            second.close()
        wait_until(lambda: get(running.port).status == 200, timeout=5)


def test_limit_concurrency_counts_running_requests() -> None:
    """Tasks still running after their response count too (an app doing work afterwards)."""
    release = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await respond(send, 200, b"ok")
        while scope["path"] == "/linger" and not release.is_set():
            await asyncio.sleep(0.01)

    with running_server(app, limit_concurrency=2) as running:
        try:
            with RawClient.connect(running.port) as holder:
                assert holder.request(b"GET", b"/linger").status == 200
                assert holder.request(b"GET", b"/linger").status == 200
                wait_until(lambda: running.server.state is not None and running.server.state.tasks == 2)
                assert holder.request().status == 503
                holder.assert_closed()
        finally:
            release.set()
        wait_until(lambda: running.server.state is not None and running.server.state.tasks == 0)
        assert get(running.port).status == 200


# -- graceful shutdown ----------------------------------------------------------------------------


def test_graceful_shutdown_finishes_in_flight_and_closes_idle(loop_name: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/slow":
            await asyncio.sleep(0.6)
        await respond(send, 200, b"done " + scope["path"].encode())

    with running_server(app, loop=loop_name, timeout_graceful_shutdown=10) as running:
        idle = RawClient.connect(running.port)
        busy = RawClient.connect(running.port)
        try:
            assert idle.request(b"GET", b"/quick").status == 200
            busy.send(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
            wait_until(lambda: running.server.state is not None and running.server.state.tasks == 1)
            running.server.request_exit()
            idle.assert_closed(timeout=2)  # idle keep-alive connection: closed at once
            response = busy.response()  # in-flight request: completes
            assert response.status == 200 and response.body == b"done /slow"
            assert response.header(b"connection") == b"close"
            busy.assert_closed()
            running.thread.join(10)
            assert not running.thread.is_alive()
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", running.port), timeout=1).close()
        finally:
            idle.close()
            busy.close()


def test_graceful_shutdown_timeout_cancels_stuck_requests() -> None:
    cancelled = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with running_server(app, timeout_graceful_shutdown=0.5) as running, RawClient.connect(running.port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        wait_until(lambda: running.server.state is not None and running.server.state.tasks == 1)
        start = time.monotonic()
        running.server.request_exit()
        running.thread.join(10)
        assert not running.thread.is_alive() and time.monotonic() - start < 5
        assert cancelled.is_set()
        assert c.closed_within(2)


# -- proxy headers and root_path ------------------------------------------------------------------

FORWARDED = {"x_forwarded_for": b"203.0.113.7, 127.0.0.1", "x_forwarded_proto": b"https"}


def test_proxy_headers_from_a_trusted_proxy(server: RunningServer) -> None:
    with RawClient.connect(server.port) as client:
        seen = scope_of(client.request(b"GET", b"/", **FORWARDED))
        assert seen["client"] == ["203.0.113.7", 0]
        assert seen["scheme"] == "https"


def test_proxy_headers_from_an_untrusted_peer_are_ignored() -> None:
    for options in ({"forwarded_allow_ips": ("10.1.2.3",)}, {"proxy_headers": False}):
        with running_server(echo, **options) as running, RawClient.connect(running.port) as client:
            seen = scope_of(client.request(b"GET", b"/", **FORWARDED))
            assert seen["client"][0] == "127.0.0.1" and seen["client"][1] != 0
            assert seen["scheme"] == "http"


def test_forwarded_allow_ips_network_and_star() -> None:
    for allowed in (("127.0.0.0/8",), ("*",)):
        with (
            running_server(echo, forwarded_allow_ips=allowed) as running,
            RawClient.connect(running.port) as c,
        ):
            seen = scope_of(c.request(b"GET", b"/", x_forwarded_for=b"198.51.100.1"))
            assert seen["client"] == ["198.51.100.1", 0]


def test_root_path() -> None:
    with running_server(echo, root_path="/api") as running:
        seen = scope_of(get(running.port, b"/items/1?x=y"))
        assert seen["root_path"] == "/api"
        assert seen["path"] == "/api/items/1"
        assert seen["raw_path"] == "/api/items/1"
        assert seen["query_string"] == "x=y"
