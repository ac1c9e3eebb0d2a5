"""The WSGI bridge over real sockets: PEP 3333 behaviour, errors, and the server's HTTP rules."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from apps import wsgi_raw
from apps.wsgi_raw import CLOSED, GATES, STARTED, event
from conftest import RunningServer, running_server, wait_until
from rawhttp import RawClient
from wsgi.support import Records

from steadyloop.observe.inflight import INFLIGHT
from steadyloop.wsgi import exchange as exchange_module
from steadyloop.wsgi.bridge import WSGIBridge


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server(wsgi_raw.app, threads=4) as running:
        yield running


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def test_wsgi_app_is_detected_and_bridged(server: RunningServer) -> None:
    assert isinstance(server.server.app, WSGIBridge)


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_hello_gets_a_content_length(loop: str) -> None:
    with running_server(wsgi_raw.app, loop=loop) as running, RawClient.connect(running.port) as c:
        response = c.request(b"GET", b"/")
        assert response.status == 200
        assert response.body == b"hello"
        assert response.header(b"content-length") == b"5"


def test_environ(client: httpx.Client, server: RunningServer) -> None:
    response = client.get(
        "/environ?a=1&b=%20x",
        headers=[("X-Twice", "one"), ("X-Twice", "two"), ("Cookie", "a=1"), ("Cookie", "b=2")],
    )
    env = response.json()
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/environ"
    assert env["QUERY_STRING"] == "a=1&b=%20x"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(server.port)
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert int(env["REMOTE_PORT"]) > 0
    assert env["HTTP_HOST"] == f"127.0.0.1:{server.port}"
    assert env["HTTP_X_TWICE"] == "one,two"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is True
    assert env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert env["has_input"] and env["has_errors"]
    assert env["file_wrapper"] == "FileWrapper"
    assert "CONTENT_LENGTH" not in env and "HTTP_CONTENT_LENGTH" not in env


def test_environ_body_headers(client: httpx.Client) -> None:
    env = client.post("/environ", content=b"abc", headers={"Content-Type": "text/x-thing"}).json()
    assert env["CONTENT_TYPE"] == "text/x-thing"
    assert env["CONTENT_LENGTH"] == "3"
    assert "HTTP_CONTENT_TYPE" not in env


def test_path_info_is_latin1_of_utf8() -> None:
    with running_server(_echo_path) as running, RawClient.connect(running.port) as c:
        body = c.request(b"GET", b"/caf%C3%A9/x%20y?q=%C3%A9").body
    path_info, query = json.loads(body)
    # PEP 3333: the percent-decoded UTF-8 bytes, each byte one latin-1 character.
    assert path_info == "/caf\xc3\xa9/x y"
    assert path_info.encode("latin-1").decode("utf-8") == "/café/x y"
    assert query == "q=%C3%A9"


def _echo_path(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return [json.dumps([environ["PATH_INFO"], environ["QUERY_STRING"]]).encode(), b""]


def test_root_path_becomes_script_name() -> None:
    with running_server(wsgi_raw.app, root_path="/api") as running, RawClient.connect(running.port) as c:
        env = json.loads(c.request(b"GET", b"/environ").body)
    assert env["SCRIPT_NAME"] == "/api"
    assert env["PATH_INFO"] == "/environ"


def test_underscore_headers_are_dropped(server: RunningServer) -> None:
    with RawClient.connect(server.port) as c:
        c.send(b"GET /environ HTTP/1.1\r\nHost: x\r\nX-Real: ok\r\nX_Forwarded_For: 6.6.6.6\r\n\r\n")
        env = json.loads(c.response().body)
    assert env["HTTP_X_REAL"] == "ok"
    assert "HTTP_X_FORWARDED_FOR" not in env


@pytest.mark.parametrize("how", ["readline", "readlines", "iter"])
def test_input_lines(client: httpx.Client, how: str) -> None:
    body = b"alpha\nbeta\n\ngamma"
    assert client.post(f"/lines?how={how}", content=body).json() == ["alpha\n", "beta\n", "\n", "gamma"]


def test_chunked_upload_is_read_to_its_end(client: httpx.Client) -> None:
    def parts() -> Iterator[bytes]:
        for _ in range(50):
            yield b"y" * 10000

    response = client.post("/upload", content=parts())  # no length: chunked
    assert response.text == "500000"


def test_expect_continue_is_sent_when_the_app_reads(server: RunningServer) -> None:
    with RawClient.connect(server.port) as c:
        c.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert c.response().status == 100
        c.send(b"hello")
        response = c.response()
        assert response.status == 200 and response.body == b"5"


def test_streaming_is_not_buffered(client: httpx.Client) -> None:
    with client.stream("GET", "/gated-stream?id=g1") as response:
        chunks = response.iter_raw()
        assert next(chunks) == b"first;"  # arrives while the app waits at its gate
        event(GATES, "g1").set()
        assert b"".join(chunks) == b"second"
    assert response.headers["transfer-encoding"] == "chunked"
    wait_until(event(CLOSED, "g1").is_set, timeout=5)


def test_write_callable(client: httpx.Client) -> None:
    assert client.get("/write?id=w1").text == "one;two;three"
    wait_until(event(CLOSED, "w1").is_set, timeout=5)


def test_exc_info_before_headers_replaces_the_response(client: httpx.Client) -> None:
    response = client.get("/exc-before")
    assert response.status_code == 503
    assert response.text == "recovered"


def test_exc_info_after_headers_cuts_the_response(server: RunningServer) -> None:
    with Records("steadyloop.error") as errors, RawClient.connect(server.port) as c:
        c.send(b"GET /exc-after HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(EOFError):
            c.response()
        wait_until(lambda: any("too late" in _text(r) for r in errors.records), timeout=5)
    assert_worker_alive(server)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/error", "boom in a WSGI view"),
        ("/exit", "SystemExit"),
        ("/no-start", "without calling start_response"),
        ("/bad-header", "CR, LF or NUL"),
        ("/not-bytes", "must be bytes"),
    ],
)
def test_app_errors_answer_500(server: RunningServer, path: str, message: str) -> None:
    with Records("steadyloop.error") as errors, RawClient.connect(server.port) as c:
        response = c.request(b"GET", path.encode())
        assert response.status == 500
        wait_until(lambda: any(message in _text(r) for r in errors.records), timeout=5)
    assert_worker_alive(server)


def test_error_while_streaming_aborts_and_closes(server: RunningServer) -> None:
    with Records("steadyloop.error"), RawClient.connect(server.port) as c:
        c.send(b"GET /error-iter?id=e1 HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(EOFError):  # a chunked body with no last chunk: visibly truncated
            c.response()
    wait_until(event(CLOSED, "e1").is_set, timeout=5)
    assert_worker_alive(server)


def test_close_is_called_when_the_client_leaves(server: RunningServer) -> None:
    PROGRESS_ID = "leaver"
    with RawClient.connect(server.port) as c:
        c.send(b"GET /stream?n=100000&size=65536&id=leaver HTTP/1.1\r\nHost: x\r\n\r\n")
        c.read_until(b"\r\n\r\n")
    wait_until(event(CLOSED, PROGRESS_ID).is_set, timeout=10)
    assert wsgi_raw.PROGRESS[PROGRESS_ID] < 100000 * 65536
    assert_worker_alive(server)


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(300_000))
    return path


def test_file_wrapper_uses_sendfile(client: httpx.Client, data_file: Path) -> None:
    wsgi_raw.CountingFile.reads = 0
    response = client.get("/file", params={"path": str(data_file)})
    assert response.status_code == 200
    assert response.content == data_file.read_bytes()
    assert response.headers["content-length"] == "300000"
    assert wsgi_raw.CountingFile.reads == 0  # not one byte went through Python


def test_file_wrapper_head(server: RunningServer, data_file: Path) -> None:
    with RawClient.connect(server.port) as c:
        response = c.request(b"HEAD", b"/file?path=" + str(data_file).encode())
        assert response.status == 200
        assert response.header(b"content-length") == b"300000"
        assert c.request(b"GET", b"/").body == b"hello"  # nothing stray on the connection


@pytest.mark.parametrize("kind", ["offset", "bytesio"])
def test_file_wrapper_falls_back_to_iterating(client: httpx.Client, data_file: Path, kind: str) -> None:
    response = client.get("/file", params={"path": str(data_file), "kind": kind})
    expected = data_file.read_bytes()
    assert response.content == (expected[10:] if kind == "offset" else expected)


# -- the server's HTTP rules, unchanged for WSGI apps -----------------------------------------


def test_keep_alive_and_pipelining(server: RunningServer) -> None:
    with RawClient.connect(server.port) as c:
        c.send(
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /environ HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        assert c.response().body == b"hello"
        assert c.response().body == b"3"
        assert json.loads(c.response().body)["PATH_INFO"] == "/environ"
        assert c.request(b"GET", b"/").body == b"hello"  # still the same connection


def test_limits_and_strict_parsing(server: RunningServer) -> None:
    with RawClient.connect(server.port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        assert c.response().status == 431
    with RawClient.connect(server.port) as c:
        # Content-Length with Transfer-Encoding: the smuggling shape, refused.
        c.send(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        assert c.response().status == 400
    assert_worker_alive(server)


def test_graceful_shutdown_finishes_a_wsgi_request() -> None:
    with running_server(wsgi_raw.app, threads=2) as running:
        c = RawClient.connect(running.port)
        try:
            c.send(b"GET /block?id=shutdown1 HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_until(event(STARTED, "shutdown1").is_set, timeout=5)
            running.server.request_exit()
            wait_until(lambda: running.server.state is not None and running.server.state.shutting_down)
            event(GATES, "shutdown1").set()
            response = c.response()
            assert response.status == 200 and response.body == b"released shutdown1"
            assert c.closed_within(5)
        finally:
            c.close()


def test_the_pool_is_bounded_and_waits_are_reported() -> None:
    with (
        Records("steadyloop.threadpool") as reports,
        running_server(wsgi_raw.app, threads=2, block_threshold=0.05) as running,
    ):
        bridge = running.server.app
        assert isinstance(bridge, WSGIBridge)
        results: list[int] = []

        def call(name: str) -> None:
            with RawClient.connect(running.port) as c:
                results.append(c.request(b"GET", f"/block?id={name}".encode()).status)

        names = [f"bounded{i}" for i in range(4)]
        clients = [threading.Thread(target=call, args=(n,)) for n in names]
        for t in clients:
            t.start()
        try:
            wait_until(lambda: bridge.stats.busy == 2 and bridge.stats.queued == 2, timeout=5)
            assert sum(event(STARTED, n).is_set() for n in names) == 2
            wait_until(lambda: any("for a pool thread" in m for m in reports.messages()), timeout=5)
            message = next(m for m in reports.messages() if "for a pool thread" in m)
            assert message.startswith("GET /block has waited ")
            assert "2 of 2 busy, 2 queued (pool wsgi)" in message
        finally:
            for n in names:
                event(GATES, n).set()
            for t in clients:
                t.join(10)
        assert results == [200] * 4
        assert bridge.pool.threads == 2
        snap = bridge.stats.snapshot()
        assert snap["busy"] == 0 and snap["queued"] == 0
        assert snap["long_waits"] >= 2 and snap["longest_wait"] > 0.05


def test_lifespan_shutdown_stops_the_pool_threads() -> None:
    before = set(threading.enumerate())
    with running_server(wsgi_raw.app, threads=3) as running, httpx.Client(base_url=running.url) as c:
        assert c.get("/").text == "hello"
    wait_until(
        lambda: (
            not [t for t in threading.enumerate() if t.name.startswith("steadyloop-wsgi") and t not in before]
        ),
        timeout=5,
    )


# -- helpers --------------------------------------------------------------------------------------


def _text(record: logging.LogRecord) -> str:
    text = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        text += f" {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
    return text


def assert_worker_alive(server: RunningServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"hello")


def test_many_responses_finishing_at_once_each_reach_their_own_client() -> None:
    """Pool threads finishing together share loop wake-ups; every response still goes to
    the connection that asked for it, whole and in order."""
    count = 16
    with running_server(wsgi_raw.app, threads=count) as running:
        names = [f"together{i}" for i in range(count)]
        clients = [RawClient.connect(running.port) for _ in names]
        try:
            for c, name in zip(clients, names, strict=True):
                c.send(f"GET /block?id={name} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            wait_until(lambda: all(event(STARTED, n).is_set() for n in names), timeout=5)
            for name in names:
                event(GATES, name).set()
            for c, name in zip(clients, names, strict=True):
                response = c.response()
                assert response.status == 200
                assert response.body == f"released {name}".encode()
            # The connections stay usable: a second round on each, pipelined.
            for c in clients:
                c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
            for c in clients:
                assert [c.response().body for _ in range(2)] == [b"hello", b"hello"]
        finally:
            for name in names:
                event(GATES, name).set()
            for c in clients:
                c.close()


def test_small_responses_are_served_without_a_task() -> None:
    """HTTP/1.1 requests go through the bridge's direct path: counted as a request in
    flight (concurrency limit, shutdown), with no asyncio task of their own."""
    with running_server(wsgi_raw.app, threads=2) as running, RawClient.connect(running.port) as c:
        state = running.server.state
        assert state is not None and state.direct_http1 is not None
        c.send(b"GET /block?id=direct1 HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(event(STARTED, "direct1").is_set, timeout=5)
        assert state.tasks == 1
        assert not [cycle for cycle in list(INFLIGHT.values()) if cycle.path == "/block"]
        event(GATES, "direct1").set()
        response = c.response()
        assert response.status == 200 and response.body == b"released direct1"
        wait_until(lambda: state.tasks == 0, timeout=5)
        # A response that is not whole at once still works: it gets a task then.
        c.send(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.response().status == 200
        wait_until(lambda: state.tasks == 0, timeout=5)


def test_a_client_leaving_a_direct_request_frees_it() -> None:
    """The client leaves while the app runs: the request stops counting at once, and a job
    still queued for a thread never runs the app."""
    with running_server(wsgi_raw.app, threads=1) as running:
        state = running.server.state
        assert state is not None
        holder = RawClient.connect(running.port)
        leaver = RawClient.connect(running.port)
        try:
            holder.send(b"GET /block?id=holder1 HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_until(event(STARTED, "holder1").is_set, timeout=5)
            leaver.send(b"GET /block?id=leaver1 HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_until(lambda: state.tasks == 2, timeout=5)
            leaver.close()
            wait_until(lambda: state.tasks == 1, timeout=5)
            event(GATES, "holder1").set()
            assert holder.response().body == b"released holder1"
            # One thread, jobs in order: this one runs after the abandoned job's turn.
            assert holder.request(b"GET", b"/").body == b"hello"
            assert not event(STARTED, "leaver1").is_set()
            wait_until(lambda: state.tasks == 0, timeout=5)
        finally:
            event(GATES, "holder1").set()
            event(GATES, "leaver1").set()
            holder.close()


_LARGE = b"x" * (4 * 1024 * 1024)  # far above the exchange's high-water mark (128 KiB)


def _large_or_small(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = _LARGE if environ["PATH_INFO"] == "/large" else b"small"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]  # whole, as one list item: served without a task


def test_a_whole_large_response_frees_its_thread_once_handed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole response above the high-water mark is handed to the connection in one go; its
    thread must be free then, not wait for a flow-control signal nobody sends. The one
    thread's wait slice is made far longer than the client's deadline, so a thread held
    until the slice ends fails this test every time, and a free one passes with room to spare."""
    monkeypatch.setattr(exchange_module, "_WAIT_SLICE", 120.0)
    with running_server(_large_or_small, threads=1) as running:
        first = RawClient.connect(running.port)
        second = RawClient.connect(running.port, timeout=30.0)
        try:
            first.send(b"GET /large HTTP/1.1\r\nHost: x\r\n\r\n")
            first.read_until(b"\r\n\r\n")  # the head is out: the large response is in the loop's hands
            # `first` reads no more for now; the only pool thread must serve this at once anyway.
            response = second.request(b"GET", b"/small")
            assert response.status == 200 and response.body == b"small"
            assert len(first.read_exact(len(_LARGE))) == len(_LARGE)
        finally:
            first.close()
            second.close()


def _same_header_list(environ: dict[str, Any], start_response: Any) -> Any:
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Same", "yes")])
    if environ["PATH_INFO"] == "/file":
        return environ["wsgi.file_wrapper"](open(environ["QUERY_STRING"], "rb"))
    return [b"abc"]


def test_a_header_list_seen_before_is_not_changed_by_a_file_response(tmp_path: Path) -> None:
    """Header lists are remembered once encoded; a file sent with sendfile adds its
    Content-Length to its own response's list, never to the remembered one."""
    data = tmp_path / "data.bin"
    data.write_bytes(b"z" * 1000)
    with running_server(_same_header_list, threads=1) as running, RawClient.connect(running.port) as c:
        for _ in range(2):
            plain = c.request(b"GET", b"/plain")
            assert plain.status == 200 and plain.body == b"abc"
            assert plain.header(b"content-length") == b"3" and plain.header(b"x-same") == b"yes"
            sent = c.request(b"GET", b"/file?" + str(data).encode())
            assert sent.status == 200 and sent.body == b"z" * 1000
            assert sent.header_all(b"content-length") == [b"1000"]
