"""HTTP/2 with real clients over loopback: httpx (ALPN over TLS, h2c prior knowledge), curl
(ALPN, prior knowledge, Upgrade: h2c), h2load, and a raw `h2` client engine where a test
needs to see frames: flow control per stream, trailers, pathsend, GOAWAY at shutdown,
keep-alive PING, --limit-concurrency."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h2.events
import httpx
import pytest
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, PingFrame

from tests.apps.basic import lifespan_ok, read_body, respond
from tests.certs import Certs, make_certs
from tests.conftest import RunningServer, free_port, running_server, spawn, wait_until
from tests.h2frames import REQUEST, RawH2, goaway

BIG = 5 * 1024 * 1024
FILE_SIZE = 1024 * 1024 + 123


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan_ok(receive, send)
        return
    path = scope["path"]
    if path == "/hold":  # reads its body only after a while (?ms=, default 1500): a slow reader
        await asyncio.sleep(int(scope["query_string"].decode().partition("ms=")[2] or 1500) / 1000)
    body = await read_body(receive)
    if path == "/big":
        await respond(send, 200, b"b" * BIG)
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(10):
            await send({"type": "http.response.body", "body": b"chunk %d\n" % i, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/trailers":
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"with trailers"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]})
    elif path == "/file":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": os.environ["H2_TEST_FILE"]})
    elif path == "/fields":  # mixed-case names, connection-specific fields, a list and a bytearray
        fields = [
            (b"X-Mixed", b"a"),
            (b"Connection", b"close"),
            [b"x-list", b"b"],
            (bytearray(b"x-ba"), b"c"),
        ]
        fields += [(b"transfer-encoding", b"chunked"), (b"keep-alive", b"5"), (b"x-mixed", b"d")]
        await send({"type": "http.response.start", "status": 200, "headers": fields})
        await send({"type": "http.response.body", "body": b"fields"})
    elif path.startswith("/bad-field/"):  # CR, LF or NUL in a value: the app fails, 500
        value = {"cr": b"a\rb", "lf": b"a\nb", "nul": b"a\0b"}[path.rpartition("/")[2]]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-bad", value)]})
        await send({"type": "http.response.body", "body": b"never"})
    elif path == "/fail-before":
        raise RuntimeError("app failed before its response (test)")
    elif path == "/fail-after":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise RuntimeError("app failed mid-response (test)")
    elif path == "/block":
        time.sleep(0.3)  # blocks the loop: the watchdog must name this stream's request
        await respond(send, 200, b"blocked")
    elif path == "/slow":
        await asyncio.sleep(0.5)
        await respond(send, 200, b"slow done")
    else:
        info = {
            "http_version": scope["http_version"],
            "scheme": scope["scheme"],
            "extensions": sorted(scope["extensions"]),
            "headers": [[n.decode(), v.decode()] for n, v in scope["headers"]],
            "length": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
        }
        await respond(send, 200, json.dumps(info).encode(), [(b"content-type", b"application/json")])


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def server(certs: Certs) -> Iterator[RunningServer]:
    with running_server(app) as running:
        yield running


@pytest.fixture(scope="module")
def tls_server(certs: Certs) -> Iterator[RunningServer]:
    with running_server(app, **certs.options()) as running:
        yield running


def h2c(server: RunningServer) -> httpx.Client:
    return httpx.Client(http1=False, http2=True, base_url=f"http://127.0.0.1:{server.port}", timeout=30)


# -- negotiation --------------------------------------------------------------------------------


def test_httpx_over_tls_gets_http2_by_alpn(tls_server: RunningServer, certs: Certs) -> None:
    url = f"https://127.0.0.1:{tls_server.port}/"
    with httpx.Client(http2=True, verify=certs.client_context()) as client:
        response = client.get(url, headers={"cookie": "a=1"})
    info = response.json()
    assert response.http_version == "HTTP/2"
    assert info["http_version"] == "2" and info["scheme"] == "https"
    assert "http.response.trailers" in info["extensions"]
    assert ["host", f"127.0.0.1:{tls_server.port}"] in info["headers"]  # from :authority
    # A client that offers only http/1.1 gets HTTP/1.1 on the same port.
    with httpx.Client(verify=certs.client_context()) as client:
        assert client.get(url).json()["http_version"] == "1.1"


def test_h2c_prior_knowledge_multiplexes_requests(server: RunningServer) -> None:
    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(http1=False, http2=True, timeout=30) as client:
            url = f"http://127.0.0.1:{server.port}/slow"
            return await asyncio.gather(*(client.get(url) for _ in range(20)))

    responses = asyncio.run(run())
    assert all(r.status_code == 200 and r.http_version == "HTTP/2" for r in responses)


def curl(*args: str) -> tuple[str, str]:
    """(body, http version) of one curl request."""
    result = subprocess.run(
        ["curl", "-sS", "--max-time", "20", "-w", "\n%{http_version}", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    body, _, version = result.stdout.rpartition("\n")
    return body, version


def test_curl_http2_by_alpn_prior_knowledge_and_upgrade(
    server: RunningServer, tls_server: RunningServer, certs: Certs
) -> None:
    body, version = curl("--http2", "--cacert", certs.ca_file, f"https://127.0.0.1:{tls_server.port}/")
    assert version == "2" and json.loads(body)["http_version"] == "2"
    body, version = curl("--http2-prior-knowledge", f"http://127.0.0.1:{server.port}/stream")
    assert version == "2" and body.splitlines() == [f"chunk {i}" for i in range(10)]
    # --http2 on http:// asks for Upgrade: h2c; the request becomes stream 1.
    body, version = curl("--http2", f"http://127.0.0.1:{server.port}/?upgraded=1")
    assert version == "2" and json.loads(body)["http_version"] == "2"


@pytest.mark.parametrize("tls", [False, True])
def test_h2load(server: RunningServer, tls_server: RunningServer, tls: bool) -> None:
    url = f"https://127.0.0.1:{tls_server.port}/" if tls else f"http://127.0.0.1:{server.port}/"
    result = subprocess.run(
        ["h2load", "-n", "2000", "-c", "4", "-m", "10", url], capture_output=True, text=True, timeout=60
    )
    assert "2000 succeeded, 0 failed, 0 errored" in result.stdout, result.stdout
    if tls:
        assert "Application protocol: h2" in result.stdout


# -- bodies and flow control --------------------------------------------------------------------


def test_large_upload_and_download(server: RunningServer) -> None:
    upload = os.urandom(10 * 1024 * 1024)
    with h2c(server) as client:
        info = client.post("/", content=upload).json()
        assert info["length"] == len(upload)
        assert info["sha256"] == hashlib.sha256(upload).hexdigest()
        assert client.get("/big").content == b"b" * BIG


def events_until(client: RawH2, done: Any, timeout: float = 10.0) -> list[Any]:
    """Feed frames to the client engine until `done(events)` holds."""
    events: list[Any] = []
    client.sock.settimeout(timeout)
    while not done(events):
        data = client.sock.recv(65536)
        assert data, "connection closed"
        events += client.h2.receive_data(data)
        client.flush()
    return events


def test_a_slow_reader_of_a_response_pauses_its_stream_only(server: RunningServer) -> None:
    with RawH2(server.port) as client:
        client.h2.increment_flow_control_window(BIG * 2)  # connection window wide open
        client.h2.send_headers(1, [(b":method", b"GET"), (b":path", b"/big"), *REQUEST[2:]], end_stream=True)
        client.h2.send_headers(3, REQUEST, end_stream=True)
        client.flush()

        def stream_3_done(events: list[Any]) -> bool:
            return any(isinstance(e, h2.events.StreamEnded) and e.stream_id == 3 for e in events)

        events = events_until(client, stream_3_done)
        got_1 = sum(len(e.data) for e in events if isinstance(e, h2.events.DataReceived) and e.stream_id == 1)
        assert got_1 <= 65535  # stream 1 waits for its own window; stream 3 was answered


def test_a_slow_reading_app_pauses_its_request_stream_only(server: RunningServer) -> None:
    """/hold reads nothing for a while: its stream window closes, the connection's does not."""
    with RawH2(server.port) as client:
        events_until(client, lambda ev: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in ev))
        post = [(b":method", b"POST"), (b":path", b"/hold"), *REQUEST[2:]]
        client.h2.send_headers(1, post)
        window = client.h2.local_flow_control_window(1)
        assert window >= 1024 * 1024  # --http2-initial-stream-window-size
        for start in range(0, window, 16384):
            client.h2.send_data(1, b"h" * min(16384, window - start))
        client.flush()
        assert client.h2.local_flow_control_window(1) == 0
        client.h2.send_headers(3, [(b":method", b"POST"), *REQUEST[1:]])
        client.h2.send_data(3, b"s" * 16384, end_stream=True)
        client.flush()

        def answered(stream: int) -> Any:
            return lambda ev: any(isinstance(e, h2.events.StreamEnded) and e.stream_id == stream for e in ev)

        events = events_until(client, answered(3))
        assert not answered(1)(events)
        client.h2.end_stream(1)
        client.flush()
        events_until(client, answered(1))


def test_unread_request_bodies_are_bounded_per_connection(server: RunningServer) -> None:
    """Ten slow readers: each stream may send its window, but the connection as a whole is
    held to twice the connection window (4 MiB) of unread body."""
    with RawH2(server.port) as client:
        events_until(client, lambda ev: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in ev))
        streams = list(range(1, 21, 2))
        for sid in streams:
            hold = [(b":method", b"POST"), (b":path", b"/hold?ms=3000"), *REQUEST[2:]]
            client.h2.send_headers(sid, hold)
        sent = 0
        while True:
            for sid in streams:
                while (window := min(client.h2.local_flow_control_window(sid), 16384)) > 0:
                    client.h2.send_data(sid, b"u" * window)
                    sent += window
            client.flush()
            client.sock.settimeout(0.5)  # no window update for this long: the server holds back
            try:
                data = client.sock.recv(65536)
            except TimeoutError:
                break
            client.h2.receive_data(data)
        assert 4 * 1024 * 1024 < sent <= 2 * 4 * 1024 * 1024 + 65535, sent


def test_trailers(server: RunningServer) -> None:
    with RawH2(server.port) as client:
        get = [(b":method", b"GET"), (b":path", b"/trailers"), *REQUEST[2:]]
        client.h2.send_headers(1, get, end_stream=True)
        client.flush()
        events = events_until(client, lambda ev: any(isinstance(e, h2.events.StreamEnded) for e in ev))
        trailers = [e for e in events if isinstance(e, h2.events.TrailersReceived)]
        assert trailers and (b"x-checksum", b"abc") in trailers[0].headers
        body = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
        assert body == b"with trailers"


def test_pathsend_in_data_frames(server: RunningServer, tmp_path: Path, monkeypatch: Any) -> None:
    content = os.urandom(FILE_SIZE)
    path = tmp_path / "file.bin"
    path.write_bytes(content)
    monkeypatch.setenv("H2_TEST_FILE", str(path))
    with h2c(server) as client:
        assert client.get("/file").content == content


def test_response_fields_are_lower_cased_checked_and_connection_fields_dropped(server: RunningServer) -> None:
    with h2c(server) as client:
        for _ in range(2):  # the second time from the checked-field memory
            response = client.get("/fields")
            assert response.status_code == 200 and response.content == b"fields"
            fields = [(n, v) for n, v in response.headers.raw if n.startswith(b"x-")]
            assert fields == [(b"x-mixed", b"a"), (b"x-list", b"b"), (b"x-ba", b"c"), (b"x-mixed", b"d")]
            for name in (b"connection", b"transfer-encoding", b"keep-alive"):
                assert name not in dict(response.headers.raw)
            for bad in ("cr", "lf", "nul"):
                assert client.get(f"/bad-field/{bad}").status_code == 500


def test_head_app_failures_and_the_connection_lives_on(server: RunningServer) -> None:
    with h2c(server) as client:
        head = client.head("/big")
        assert head.status_code == 200 and head.content == b""
        assert client.get("/fail-before").status_code == 500
        with pytest.raises(httpx.RemoteProtocolError):  # the stream is reset, not the connection
            client.get("/fail-after")
        assert client.get("/").json()["http_version"] == "2"


# -- limits, shutdown, keep-alive ---------------------------------------------------------------


def test_limit_concurrency_counts_streams() -> None:
    with running_server(app, limit_concurrency=3) as srv:

        async def run() -> list[int]:
            async with httpx.AsyncClient(http1=False, http2=True, timeout=30) as client:
                url = f"http://127.0.0.1:{srv.port}/slow"
                return [r.status_code for r in await asyncio.gather(*(client.get(url) for _ in range(6)))]

        statuses = asyncio.run(run())
    assert sorted(statuses) == [200, 200, 200, 503, 503, 503]


def test_the_watchdog_names_the_stream_that_blocked_the_loop(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "steadyloop")
    with running_server(app, block_threshold=0.1) as srv, h2c(srv) as client:
        assert client.get("/block", headers={"x-request-id": "h2-block"}).status_code == 200
        wait_until(lambda: "GET /block (request h2-block)" in caplog.text)


def test_graceful_shutdown_sends_goaway_and_finishes_open_streams() -> None:
    with running_server(app) as srv:
        client = RawH2(srv.port)
        client.h2.send_headers(1, [(b":method", b"GET"), (b":path", b"/slow"), *REQUEST[2:]], end_stream=True)
        client.flush()
        assert srv.server.state is not None
        wait_until(lambda: srv.server.state is not None and srv.server.state.tasks == 1)
        threading.Thread(target=srv.server.request_exit).start()
        frames = client.frames(timeout=10)
        client.sock.close()
    away = goaway(frames)
    assert away.error_code == 0 and away.last_stream_id == 1
    after = frames[frames.index(away) :]
    assert any(isinstance(f, HeadersFrame) and f.stream_id == 1 for f in after)
    assert any(isinstance(f, DataFrame) and f.stream_id == 1 and "END_STREAM" in f.flags for f in after)


def test_keep_alive_ping_closes_a_silent_peer() -> None:
    options = {"http2_keep_alive_interval": 0.5, "http2_keep_alive_timeout": 1.0}
    with running_server(app, **options) as srv, RawH2(srv.port) as client:
        frames = client.frames(timeout=10)  # this client never answers
    assert any(isinstance(f, PingFrame) and "ACK" not in f.flags for f in frames)
    assert isinstance(frames[-1], GoAwayFrame)


def test_http_2_only_refuses_http11_and_http_1_refuses_h2c() -> None:
    with running_server(app, http="2") as srv:
        with h2c(srv) as client:
            assert client.get("/").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{srv.port}/").status_code == 505
    with running_server(app, http="1") as srv, h2c(srv) as client, pytest.raises(httpx.HTTPError):
        client.get("/")


def test_access_log_names_http2_and_uvicorn_http_values_are_accepted(certs: Certs) -> None:
    port = free_port()
    args = ["apps.basic:echo", "--port", str(port), "--http", "h11", *certs.args()]
    with spawn(args, port=port, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        _, version = curl("--http2", "--cacert", certs.ca_file, f"https://127.0.0.1:{port}/logged")
        assert version == "2"
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert re.search(r'"GET /logged HTTP/2" 200', out + err), out + err
    assert "--http h11: steadyloop has one HTTP/1.1 parser" in err
