"""Http1Connection through a fake transport: the rules of a connection, without a network."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from steadyloop.observe.inflight import INFLIGHT
from steadyloop.protocols.eager import REST_TICKS
from steadyloop.protocols.http1.connection import RESTING
from tests.protocols.fakes import Harness

GET = b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n"


async def hello(scope: Any, receive: Any, send: Any) -> None:
    body = scope["path"].encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness(hello)
    yield h
    h.close()


def make(app: Any, **config: Any) -> Harness:
    return Harness(app, **config)


def test_a_request_in_gives_its_response_out(harness: Harness) -> None:
    conn, transport = harness.connect()
    harness.feed(conn, GET % b"a")
    out = transport.take()
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-length: 2\r\n" in out and out.endswith(b"\r\n\r\n/a")
    assert b"date: " in out and b"server: steadyloop" in out
    assert conn.is_idle() and not transport.closing


def test_pipelined_requests_are_answered_in_order(harness: Harness) -> None:
    conn, transport = harness.connect()
    harness.feed(conn, (GET % b"1") + (GET % b"2") + (GET % b"3"))
    out = transport.take()
    assert out.count(b"HTTP/1.1 200 OK") == 3
    assert out.index(b"\r\n\r\n/1") < out.index(b"\r\n\r\n/2") < out.index(b"\r\n\r\n/3")


def test_a_request_split_into_single_bytes_is_served(harness: Harness) -> None:
    conn, transport = harness.connect()
    for byte in GET % b"slow":
        harness.receive(conn, bytes([byte]))
    harness.settle()
    assert transport.take().endswith(b"/slow")


def test_a_malformed_request_gets_400_then_a_lingering_close(harness: Harness) -> None:
    conn, transport = harness.connect()
    harness.feed(conn, b"GET / HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n")
    out = transport.take()
    assert out.startswith(b"HTTP/1.1 400 ")
    assert b"connection: close\r\n" in out
    # Half-closed, still reading so that the answer is not destroyed by a reset.
    assert transport.eof_written and not transport.closing


def test_the_peer_leaving_tells_a_waiting_app_http_disconnect() -> None:
    heard: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                heard.append("disconnect")
                return

    h = make(app)
    try:
        conn, _ = h.connect()
        h.feed(conn, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
        assert not conn.is_idle()
        conn.connection_lost(None)
        h.settle()
        assert heard == ["disconnect"]
        assert h.state.connections == set()
    finally:
        h.close()


def test_an_unread_body_pauses_reading_until_the_app_takes_it() -> None:
    gate = asyncio.Event()
    received: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await gate.wait()
        more = True
        while more:
            message = await receive()
            received.append(len(message["body"]))
            more = message["more_body"]
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    h = make(app)
    try:
        conn, transport = h.connect()
        size = 600 * 1024
        h.feed(conn, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size // 65536 + 1):
            if not transport.reading:
                break
            h.receive(conn, b"x" * min(65536, size - 0))
        assert not transport.reading  # paused: the app has not read
        gate.set()
        h.settle()
        assert transport.reading  # the app took what was buffered
    finally:
        h.close()


def test_send_waits_while_the_client_does_not_drain() -> None:
    steps: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"a" * 10, "more_body": True})
        steps.append("first chunk sent")
        await send({"type": "http.response.body", "body": b"b", "more_body": False})
        steps.append("done")

    h = make(app)
    try:
        conn, transport = h.connect()
        conn.pause_writing()  # the kernel buffer is full
        h.feed(conn, GET % b"")
        assert steps == []  # waiting in the first send
        out = transport.take()
        assert b"transfer-encoding: chunked" in out and out.endswith(b"a\r\naaaaaaaaaa\r\n")
        conn.resume_writing()
        h.settle()
        assert steps == ["first chunk sent", "done"]
        assert transport.take() == b"1\r\nb\r\n0\r\n\r\n"
    finally:
        h.close()


def test_an_idle_keep_alive_connection_closes_after_its_timeout(harness: Harness) -> None:
    conn, transport = harness.connect()
    harness.feed(conn, GET % b"")
    transport.take()
    conn.check_timeouts(harness.state.now + 1.0)
    assert not transport.closing
    conn.check_timeouts(conn.idle_since + harness.state.config.timeouts.keep_alive + 0.01)
    assert transport.closing and not transport.aborted


def test_a_head_that_never_completes_gets_408(harness: Harness) -> None:
    conn, transport = harness.connect()
    harness.feed(conn, b"GET / HTTP/1.1\r\nHost: x\r\n")
    conn.check_timeouts(harness.state.now + harness.state.config.timeouts.header_read + 0.01)
    assert transport.take().startswith(b"HTTP/1.1 408 ")


def test_shutdown_closes_an_idle_connection_at_once(harness: Harness) -> None:
    conn, transport = harness.connect()
    conn.shutdown()
    assert transport.closing


def test_shutdown_lets_the_response_in_progress_finish_and_says_close() -> None:
    gate = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await gate.wait()
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"ok"})

    h = make(app)
    try:
        conn, transport = h.connect()
        h.feed(conn, GET % b"")
        conn.shutdown()
        assert not transport.closing
        gate.set()
        h.settle()
        out = transport.take()
        assert b"connection: close\r\n" in out and out.endswith(b"ok")
        assert transport.closing
    finally:
        h.close()


def test_a_500_answered_by_the_server_counts_towards_max_requests() -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("app bug")

    h = make(broken)
    reached: list[int] = []
    h.state.max_requests = 2
    h.state.on_max_requests = lambda: reached.append(h.state.requests)
    try:
        for _ in range(2):
            conn, transport = h.connect()
            h.feed(conn, GET % b"")
            assert transport.take().startswith(b"HTTP/1.1 500 ")
        assert h.state.requests == 2
        assert reached == [2]
    finally:
        h.close()


def test_an_app_that_returns_without_a_response_gets_500(harness: Harness) -> None:
    async def silent(scope: Any, receive: Any, send: Any) -> None:
        return None

    h = make(silent)
    try:
        conn, transport = h.connect()
        h.feed(conn, GET % b"")
        assert transport.take().startswith(b"HTTP/1.1 500 ")
        assert h.state.requests == 1
    finally:
        h.close()


def test_every_way_an_app_task_ends_is_accounted_for() -> None:
    """The task counter and the in-flight registry let go of a request's task however it
    ends: answered, raising, silent, cancelled while it waits."""
    gate = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        path = scope["path"]
        if path == "/raise":
            raise ValueError("app bug")
        if path == "/silent":
            return
        if path == "/wait":
            await gate.wait()
        await hello(scope, receive, send)

    h = make(app)
    try:
        for path, status in ((b"ok", b"200"), (b"raise", b"500"), (b"silent", b"500")):
            conn, transport = h.connect()
            h.feed(conn, GET % path)
            assert transport.take().startswith(b"HTTP/1.1 " + status)
            assert h.state.tasks == 0 and not INFLIGHT
        conn, transport = h.connect()
        h.feed(conn, GET % b"wait")
        assert h.state.tasks == 1
        [task] = INFLIGHT
        task.cancel()
        h.settle()
        # A cancelled app that had not answered gets a 500, as one that returned silently.
        assert transport.take().startswith(b"HTTP/1.1 500 ")
        assert h.state.tasks == 0 and not INFLIGHT
    finally:
        h.close()


def test_a_task_cancelled_before_its_first_step_is_accounted_for(recwarn: pytest.WarningsRecorder) -> None:
    started: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        started.append(scope["path"])
        await hello(scope, receive, send)

    h = make(app, eager_start=False)
    try:
        conn, transport = h.connect()
        conn.data_received(GET % b"a")  # the task exists; its first step has not run
        cancel_the_request(h, conn, transport, recwarn)
        assert started == []
    finally:
        h.close()


def cancel_the_request(h: Harness, conn: Any, transport: Any, recwarn: pytest.WarningsRecorder) -> None:
    """Cancel the one request in flight, as the server gives up on it: it is accounted for,
    answered with a 500, and leaves no coroutine never awaited."""
    [(task, cycle)] = INFLIGHT.items()
    conn.cancel_task(cycle)
    h.settle()
    assert task.cancelled()
    assert h.state.tasks == 0 and not INFLIGHT
    assert transport.take().startswith(b"HTTP/1.1 500 ")
    gc.collect()
    assert not [w for w in recwarn if "never awaited" in str(w.message)]


def test_a_request_cancelled_after_its_eager_first_step_awaited_is_accounted_for(
    recwarn: pytest.WarningsRecorder,
) -> None:
    steps: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        steps.append("first")
        await asyncio.sleep(0)
        steps.append("second")
        await hello(scope, receive, send)

    h = make(app)
    try:
        conn, transport = h.connect()
        h.receive(conn, GET % b"a")  # the first step ran inline and awaited: a host adopted it
        assert steps == ["first"] and h.state.tasks == 1
        cancel_the_request(h, conn, transport, recwarn)
        assert steps == ["first"]
    finally:
        h.close()


def test_a_trusted_proxy_names_the_client_in_the_scope() -> None:
    scopes: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scopes.append(scope)
        await hello(scope, receive, send)

    h = make(app, forwarded_allow_ips=("10.0.0.7",))
    try:
        conn, _ = h.connect(peer=("10.0.0.7", 4000))
        h.feed(
            conn,
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n\r\n",
        )
        assert scopes[0]["client"] == ("203.0.113.9", 0) and scopes[0]["scheme"] == "https"
    finally:
        h.close()


def _streaming_app(events: list[str]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        try:
            while True:
                await send({"type": "http.response.body", "body": b"x" * 1024, "more_body": True})
        except OSError:
            events.append("send raised")
        message = await receive()
        events.append(message["type"])

    return app


def test_a_client_that_takes_no_bytes_is_cut_after_the_write_timeout() -> None:
    events: list[str] = []
    h = make(_streaming_app(events), timeout_write=3.0)
    try:
        conn, transport = h.connect()
        conn.pause_writing()  # the kernel and the transport are full
        h.feed(conn, GET % b"")
        h.settle()
        transport.buffered = 70_000  # and stay full: the client reads nothing
        start = h.state.now
        conn.check_timeouts(start)
        conn.check_timeouts(start + 2.9)
        assert not transport.aborted
        conn.check_timeouts(start + 3.0)
        assert transport.aborted
        h.settle()
        assert events == ["send raised", "http.disconnect"]
    finally:
        h.close()


def test_a_slow_download_that_moves_is_never_cut() -> None:
    events: list[str] = []
    h = make(_streaming_app(events), timeout_write=3.0)
    try:
        conn, transport = h.connect()
        conn.pause_writing()  # the kernel and the transport are full
        h.feed(conn, GET % b"")
        transport.buffered = 70_000
        now = h.state.now
        for _ in range(20):  # a minute of sweeps; the client takes a few bytes each time
            now += 2.5
            transport.buffered -= 100
            conn.check_timeouts(now)
        assert not transport.aborted and events == []
    finally:
        h.close()


def test_pipelined_responses_go_out_in_one_write(harness: Harness) -> None:
    conn, transport = harness.connect()
    harness.feed(conn, b"".join(GET % str(i).encode() for i in range(16)))
    out = transport.take()
    assert out.count(b"HTTP/1.1 200 OK") == 16
    assert transport.writes == 1


def slow_until(gate: asyncio.Event) -> Any:
    """hello, except that /slow answers only once `gate` is set."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/slow":
            await gate.wait()
        await hello(scope, receive, send)

    return app


def test_a_slow_request_in_a_pipeline_does_not_hold_back_the_answers_before_it() -> None:
    gate = asyncio.Event()
    app = slow_until(gate)

    h = make(app)
    try:
        conn, transport = h.connect()
        h.feed(conn, (GET % b"1") + (GET % b"2") + (GET % b"slow") + (GET % b"4"))
        out = transport.take()
        assert out.count(b"HTTP/1.1 200 OK") == 2 and out.endswith(b"/2")  # not waiting for /slow
        gate.set()
        h.settle()
        out = transport.take()
        assert out.count(b"HTTP/1.1 200 OK") == 2 and out.endswith(b"/4")
    finally:
        h.close()


def test_a_slow_second_request_does_not_hold_back_the_first_answer() -> None:
    gate = asyncio.Event()
    app = slow_until(gate)

    h = make(app)
    try:
        conn, transport = h.connect()
        h.feed(conn, (GET % b"1") + (GET % b"slow"))
        out = transport.take()
        assert out.count(b"HTTP/1.1 200 OK") == 1 and out.endswith(b"/1")
        gate.set()
        h.settle()
        assert transport.take().endswith(b"/slow")
        assert conn.is_idle()
    finally:
        h.close()


def test_an_app_that_goes_on_after_its_response_does_not_hold_back_a_stalled_pipeline() -> None:
    # The task that completed a response is still running: the stall check cannot ride on
    # its end, and must still come.
    after = asyncio.Event()
    gate = asyncio.Event()
    finished: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        path = scope["path"]
        if path == "/slow":
            await gate.wait()
        await hello(scope, receive, send)
        if path != "/slow":
            await after.wait()  # work after the response
            finished.append(path)

    h = make(app)
    try:
        conn, transport = h.connect()
        h.feed(conn, (GET % b"1") + (GET % b"2") + (GET % b"slow") + (GET % b"4"))
        out = transport.take()
        assert out.count(b"HTTP/1.1 200 OK") == 2 and out.endswith(b"/2")
        gate.set()
        h.settle()
        out = transport.take()
        assert out.count(b"HTTP/1.1 200 OK") == 2 and out.endswith(b"/4")
        after.set()
        h.settle()
        assert finished == ["/1", "/2", "/4"]
    finally:
        h.close()


def test_a_stall_after_a_drained_pipeline_is_seen_in_the_next_one() -> None:
    gate = asyncio.Event()
    app = slow_until(gate)

    h = make(app)
    try:
        conn, transport = h.connect()
        h.feed(conn, (GET % b"1") + (GET % b"2"))
        assert transport.writes == 1 and transport.take().endswith(b"/2")
        h.feed(conn, (GET % b"3") + (GET % b"slow"))
        assert transport.take().endswith(b"/3")
        gate.set()
        h.settle()
        assert transport.take().endswith(b"/slow")
    finally:
        h.close()


def test_watching_a_pipeline_for_stalls_schedules_no_callback_per_request(harness: Harness) -> None:
    conn, transport = harness.connect()
    loop = harness.loop
    scheduled: list[Any] = []
    call_soon = loop.call_soon

    def counting_call_soon(callback: Any, *args: Any, **kwargs: Any) -> Any:
        scheduled.append(callback)
        return call_soon(callback, *args, **kwargs)

    loop.call_soon = counting_call_soon  # type: ignore[method-assign]
    try:
        harness.feed(conn, b"".join(GET % str(i).encode() for i in range(16)))
    finally:
        del loop.call_soon
    assert transport.take().count(b"HTTP/1.1 200 OK") == 16 and transport.writes == 1
    ours = [
        cb
        for cb in scheduled
        if getattr(cb, "__self__", None) is conn and cb.__name__ not in ("_task_done", "data_received")
    ]
    assert len(ours) <= 1


def test_a_streamed_response_in_a_pipeline_keeps_its_order() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/stream":
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body", "body": b"part", "more_body": True})
            await send({"type": "http.response.body", "body": b"end"})
        else:
            await hello(scope, receive, send)

    h = make(app)
    try:
        conn, transport = h.connect()
        h.feed(conn, (GET % b"1") + (GET % b"stream") + (GET % b"3"))
        out = transport.take()
        first, stream, third = out.index(b"\r\n\r\n/1"), out.index(b"4\r\npart\r\n"), out.index(b"/3")
        assert first < stream < out.index(b"3\r\nend\r\n0\r\n\r\n") < third
    finally:
        h.close()


def test_a_target_seen_before_gives_the_same_scope_entries() -> None:
    seen: list[tuple[str, bytes, bytes, str]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope["path"], scope["raw_path"], scope["query_string"], scope["root_path"]))
        await hello(scope, receive, send)

    for root in ("", "/api"):
        h = make(app, root_path=root)
        try:
            conn, _transport = h.connect()
            for target in (b"/seen/twice?a=1", b"/seen/twice?a=1", b"/seen/twice", b"/seen/twice?b=2"):
                h.feed(conn, b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target)
        finally:
            h.close()
    rb = b"/api/seen/twice"
    assert seen == [
        ("/seen/twice", b"/seen/twice", b"a=1", ""),
        ("/seen/twice", b"/seen/twice", b"a=1", ""),
        ("/seen/twice", b"/seen/twice", b"", ""),
        ("/seen/twice", b"/seen/twice", b"b=2", ""),
        ("/api/seen/twice", rb, b"a=1", "/api"),
        ("/api/seen/twice", rb, b"a=1", "/api"),
        ("/api/seen/twice", rb, b"", "/api"),
        ("/api/seen/twice", rb, b"b=2", "/api"),
    ]


def test_a_connection_holds_a_parser_only_while_a_request_is_part_read(harness: Harness) -> None:
    first, first_transport = harness.connect()
    second, second_transport = harness.connect(("10.0.0.8", 50001))
    harness.feed(first, GET % b"whole")
    assert first.parser is RESTING  # given back: between requests a connection holds none
    head = GET % b"split"
    harness.feed(first, head[:20])
    assert first.parser is not RESTING  # part of a head: this parser is the connection's now
    harness.feed(second, GET % b"other")  # meanwhile another connection reads with another one
    assert second.parser is RESTING and second_transport.take().endswith(b"/other")
    harness.feed(first, head[20:])
    assert first.parser is RESTING
    assert first_transport.take().count(b"HTTP/1.1 200 OK") == 2


async def read_then_hello(scope: Any, receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await hello(scope, receive, send)


def test_interleaved_part_read_requests_on_many_connections_are_each_answered() -> None:
    # Every split of every request, on connections taking turns: whatever parser a read
    # borrows, each connection gets exactly its own answers, in order.
    harness = make(read_then_hello)
    conns = [harness.connect(("10.0.0.9", 50000 + i)) for i in range(4)]
    requests = [
        GET % b"g",
        b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ]
    for request in requests:
        for cut in range(1, len(request)):
            for i, (conn, _) in enumerate(conns):
                harness.feed(conn, request[: (cut + i) % len(request) or cut])
            for i, (conn, _) in enumerate(conns):
                harness.feed(conn, request[(cut + i) % len(request) or cut :])
            for conn, transport in conns:
                out = transport.take()
                assert out.startswith(b"HTTP/1.1 200 OK") and out.count(b"HTTP/1.1") == 1, out
                assert out.endswith(request.split(b" ", 2)[1]), out
                assert conn.parser is RESTING
    harness.close()


def test_eager_start_rests_while_more_first_steps_await_than_finish() -> None:
    async def awaits(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0)
        await hello(scope, receive, send)

    h = make(awaits)
    try:
        hosts = h.state.hosts
        assert hosts is not None and hosts.enabled
        conn, transport = h.connect()
        for path in (b"a", b"b"):
            h.feed(conn, GET % path)
        assert (hosts.adopted, hosts.finished) == (2, 0)
        hosts.review()  # the housekeeping timer's: more awaited than finished
        assert not hosts.enabled
        h.feed(conn, GET % b"c")
        assert hosts.adopted == 0  # a task of its own, no eager step
        for _ in range(REST_TICKS - 1):
            hosts.review()
            assert not hosts.enabled
        hosts.review()
        assert hosts.enabled  # tried again
        h.feed(conn, GET % b"d")
        assert hosts.adopted == 1
        assert transport.take().count(b"HTTP/1.1 200 OK") == 4
    finally:
        h.close()


def test_eager_start_stays_on_while_most_first_steps_finish(harness: Harness) -> None:
    hosts = harness.state.hosts
    assert hosts is not None
    conn, _transport = harness.connect()
    harness.feed(conn, GET % b"a")
    assert (hosts.adopted, hosts.finished) == (0, 1)
    hosts.review()
    assert hosts.enabled and (hosts.adopted, hosts.finished) == (0, 0)


def test_a_host_cancelled_before_it_runs_its_request_leaves_no_coroutine_behind(
    recwarn: pytest.WarningsRecorder,
) -> None:
    async def awaits(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0)
        await hello(scope, receive, send)

    h = make(awaits)
    conn, _transport = h.connect()
    h.receive(conn, GET % b"a")  # adopted; the host has not run yet
    assert h.state.tasks == 1
    h.close()  # cancels every task, as a worker's shutdown does
    assert h.state.tasks == 0 and not INFLIGHT
    gc.collect()
    assert not [w for w in recwarn if "never awaited" in str(w.message)]
