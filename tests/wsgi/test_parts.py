"""The bridge's parts without a server: wsgi.input, the environ, file_wrapper, pool counters."""

from __future__ import annotations

import asyncio
import io
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until
from wsgi.support import Records

from steadyloop.observe.threadpool import PoolStats
from steadyloop.wsgi.environ import build_environ
from steadyloop.wsgi.exchange import Waker
from steadyloop.wsgi.filewrapper import FileWrapper
from steadyloop.wsgi.input import InputStream
from steadyloop.wsgi.pool import ThreadPool
from steadyloop.wsgi.runner import AppError, _encode_headers


def stream_of(*chunks: bytes) -> tuple[InputStream, list[int]]:
    """An InputStream over fixed chunks; the list counts how often the loop was asked."""
    asked = [0]
    pending = list(chunks)

    def read_chunk() -> tuple[bytes, bool]:
        asked[0] += 1
        chunk = pending.pop(0) if pending else b""
        return chunk, bool(pending)

    return InputStream(read_chunk), asked


def test_read_sizes_cross_chunk_boundaries() -> None:
    stream, _ = stream_of(b"abc", b"defg", b"h")
    assert stream.read(2) == b"ab"
    assert stream.read(4) == b"cdef"
    assert stream.read(10) == b"gh"
    assert stream.read(1) == b""
    assert stream.read() == b""


def test_read_asks_the_loop_only_when_short() -> None:
    stream, asked = stream_of(b"x" * 100, b"y" * 100)
    assert stream.read(10) == b"x" * 10
    assert asked[0] == 1
    assert stream.read(90) == b"x" * 90
    assert asked[0] == 1  # served from what was already there


def test_read_all_and_none() -> None:
    stream, _ = stream_of(b"ab", b"cd")
    assert stream.read(None) == b"abcd"


def test_readline_with_limits_and_no_trailing_newline() -> None:
    stream, _ = stream_of(b"one\ntw", b"o\nthree")
    assert stream.readline() == b"one\n"
    assert stream.readline(2) == b"tw"
    assert stream.readline() == b"o\n"
    assert stream.readline() == b"three"
    assert stream.readline() == b""


def test_readlines_hint_and_iteration() -> None:
    stream, _ = stream_of(b"a\nb\n", b"c\nd")
    assert stream.readlines(3) == [b"a\n", b"b\n"]
    assert list(stream) == [b"c\n", b"d"]


def test_no_body_never_asks_the_loop() -> None:
    def read_chunk() -> tuple[bytes, bool]:
        raise AssertionError("asked the loop for a body the request does not have")

    stream = InputStream(read_chunk, has_body=False)
    assert stream.read() == b"" and stream.readline() == b"" and list(stream) == []


def test_requests_without_a_body_share_one_input_that_nothing_changes() -> None:
    def read_chunk() -> tuple[bytes, bool]:
        raise AssertionError("asked the loop for a body the request does not have")

    no_body = [(b"host", b"x"), (b"content-length", b"0")]
    first = build_environ(_scope(headers=no_body), read_chunk)["wsgi.input"]
    for _ in range(2):
        assert first.read() == b"" and first.read(5) == b"" and first.read1(5) == b""
        assert first.readline() == b"" and first.readlines() == [] and list(first) == []
        first.close()
    second = build_environ(_scope(headers=[(b"host", b"x")]), read_chunk)["wsgi.input"]
    assert second is first and second.read() == b""
    with_body = build_environ(_scope(), lambda: (b"body", False))["wsgi.input"]
    assert with_body is not first and with_body.read() == b"body"


def test_empty_chunks_with_more_to_come_are_skipped() -> None:
    stream, _ = stream_of(b"", b"", b"data")
    assert stream.read(4) == b"data"


def _scope(**over: Any) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "root_path": "/app",
        "path": "/app/ünï",
        "query_string": b"a=%C3%A9",
        "headers": [
            (b"host", b"example.com:8443"),
            (b"content-length", b"4"),
            (b"content-type", b"text/plain"),
            (b"accept", b"a"),
            (b"accept", b"b"),
            (b"x_smuggled", b"1"),
        ],
        "server": ("10.0.0.1", 8443),
        "client": ("192.0.2.7", 50123),
    }
    scope.update(over)
    return scope


def test_environ_from_scope() -> None:
    env = build_environ(_scope(), lambda: (b"body", False), multiprocess=True)
    assert env["SCRIPT_NAME"] == "/app"
    assert env["PATH_INFO"] == "/ünï".encode().decode("latin-1")
    assert env["QUERY_STRING"] == "a=%C3%A9"
    assert env["CONTENT_LENGTH"] == "4" and env["CONTENT_TYPE"] == "text/plain"
    assert env["HTTP_ACCEPT"] == "a,b"
    assert not any("SMUGGLED" in key for key in env)
    assert env["SERVER_NAME"] == "10.0.0.1" and env["SERVER_PORT"] == "8443"
    assert env["REMOTE_ADDR"] == "192.0.2.7" and env["REMOTE_PORT"] == "50123"
    assert env["wsgi.url_scheme"] == "https" and env["HTTPS"] == "on"
    assert env["wsgi.multiprocess"] is True
    assert env["wsgi.input"].read() == b"body"


def test_environs_share_no_state() -> None:
    """The constant keys come from a base built once per address and scheme: an app that
    changes its environ changes nothing for the next request."""
    first = build_environ(_scope(), lambda: (b"", False))
    first["wsgi.url_scheme"] = "changed"
    first["SERVER_NAME"] = "changed"
    first["EXTRA"] = "x"
    second = build_environ(_scope(), lambda: (b"", False))
    assert second["wsgi.url_scheme"] == "https" and second["SERVER_NAME"] == "10.0.0.1"
    assert "EXTRA" not in second and second["wsgi.errors"] is not first["wsgi.errors"]
    assert second["wsgi.input"] is not first["wsgi.input"]
    plain = build_environ(_scope(scheme="http", http_version="1.0"), lambda: (b"", False))
    assert plain["wsgi.url_scheme"] == "http" and "HTTPS" not in plain
    assert plain["SERVER_PROTOCOL"] == "HTTP/1.0" and plain["wsgi.multiprocess"] is False
    assert build_environ(_scope(), lambda: (b"", False), multiprocess=True)["wsgi.multiprocess"]
    other_root = build_environ(_scope(root_path="/other", path="/other/x"), lambda: (b"", False))
    assert other_root["SCRIPT_NAME"] == "/other" and other_root["PATH_INFO"] == "/x"
    assert build_environ(_scope(), lambda: (b"", False))["SCRIPT_NAME"] == "/app"


def test_environ_on_a_unix_socket_uses_the_host_header() -> None:
    env = build_environ(_scope(server=("/tmp/s.sock", None), client=None), lambda: (b"", False))
    assert env["SERVER_NAME"] == "example.com" and env["SERVER_PORT"] == "8443"
    assert "REMOTE_ADDR" not in env
    env = build_environ(
        _scope(server=None, headers=[(b"host", b"[::1]")], scheme="http"), lambda: (b"", False)
    )
    assert env["SERVER_NAME"] == "[::1]" and env["SERVER_PORT"] == "80"


def test_wsgi_errors_goes_to_logging() -> None:
    env = build_environ(_scope(), lambda: (b"", False))
    with Records("steadyloop.wsgi") as records:
        env["wsgi.errors"].write("first line\nsecond ")
        env["wsgi.errors"].writelines(["part\n"])
        env["wsgi.errors"].write("tail")
        env["wsgi.errors"].flush()
    assert records.messages() == ["first line", "second part", "tail"]


def test_file_wrapper_sendfile_path(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"z" * 1000)
    with open(path, "rb") as f:
        assert FileWrapper(f).sendfile_path() == (str(path), 1000)
        f.read(1)
        assert FileWrapper(f).sendfile_path() is None  # not at its start
    with open(path, "rb") as f:
        path.rename(tmp_path / "moved.bin")
        assert FileWrapper(f).sendfile_path() is None  # the name no longer leads to it
    assert FileWrapper(io.BytesIO(b"abc")).sendfile_path() is None
    wrapper = FileWrapper(io.BytesIO(b"abcdefg"), 3)
    assert list(wrapper) == [b"abc", b"def", b"g"]
    wrapper.close()
    assert wrapper.filelike.closed


def test_pool_stats_report_finished_waits_with_rate_limit() -> None:
    stats = PoolStats("test", 2, threshold=0.001, report_burst=1, report_interval=3600)
    with Records("steadyloop.threadpool") as records:
        for _ in range(3):
            ticket = stats.enqueue("GET /x")
            threading.Event().wait(0.005)  # the wait being measured, not a synchronisation
            stats.start(ticket)
            stats.finish()
    assert stats.long_waits == 3 and stats.reports == 1 and stats.suppressed == 2
    assert len(records.records) == 1
    message = records.messages()[0]
    assert message.startswith("GET /x waited ") and "for a pool thread; 1 of 2 busy" in message
    assert getattr(records.records[0], "threadpool")["pool"] == "test"  # noqa: B009
    snap = stats.snapshot()
    assert snap["busy"] == 0 and snap["queued"] == 0 and snap["completed"] == 3


def test_pool_stats_report_a_task_still_waiting() -> None:
    """A pool whose threads are all stuck still says so: the loop's timer sees the oldest waiter."""
    stats = PoolStats("stuck", 1, threshold=0.02)
    loop = asyncio.new_event_loop()
    stats.bind(loop)
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    try:
        with Records("steadyloop.threadpool") as records:
            first = stats.enqueue("GET /a")
            stats.start(first)  # the only thread, never finished
            waiting = stats.enqueue("GET /b")
            wait_until(lambda: records.records, timeout=5)
            assert "GET /b has waited " in records.messages()[0]
            assert "1 of 1 busy, 1 queued (pool stuck)" in records.messages()[0]
            stats.finish()
            stats.start(waiting)  # reported already: not again
            stats.finish()
            assert len(records.records) == 1
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
        loop.close()


def test_worker_pool_survives_a_raising_job() -> None:
    stats = PoolStats("jobs", 2, threshold=0)
    pool = ThreadPool(2, stats, name="test-pool")
    done = threading.Event()

    def bad() -> None:
        raise RuntimeError("job bug")

    with Records("steadyloop.error") as errors:
        pool.submit(bad)
        pool.submit(done.set)
        assert done.wait(5)
        wait_until(lambda: stats.completed == 2, timeout=5)
    assert any("unexpected error" in m for m in errors.messages())
    assert pool.threads <= 2
    pool.shutdown()
    with pytest.raises(RuntimeError):
        pool.submit(done.set)


def test_waker_resolves_many_waiters_with_one_loop_call() -> None:
    """Responses finished by pool threads while the loop is busy share one wake-up."""
    loop = asyncio.new_event_loop()
    calls = [0]
    plain = loop.call_soon_threadsafe

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return plain(*args, **kwargs)

    loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
    waker = Waker(loop)
    waiters = [loop.create_future() for _ in range(20)]
    woken = threading.Barrier(21)

    def wake(waiter: asyncio.Future[None]) -> None:
        waker.wake(waiter)
        woken.wait(5)

    threads = [threading.Thread(target=wake, args=(w,)) for w in waiters]

    def busy_loop() -> None:
        # The loop is busy (in this callback) while every thread wakes its waiter.
        for t in threads:
            t.start()
        woken.wait(5)

    try:
        loop.call_soon(busy_loop)
        loop.run_until_complete(asyncio.wait_for(asyncio.gather(*waiters), 5))
        assert calls[0] == 1
        # And the next wake-up after the drain schedules a call again.
        late = loop.create_future()
        waker.wake(late)
        loop.run_until_complete(asyncio.wait_for(late, 5))
        assert calls[0] == 2
    finally:
        for t in threads:
            t.join(5)
        loop.close()


class _Failing:
    def done(self) -> bool:
        return False

    def set_result(self, result: None, /) -> None:
        raise RuntimeError("connection code failed")


def test_a_waiter_that_fails_is_reported_and_the_rest_of_the_batch_still_wakes() -> None:
    loop = asyncio.new_event_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    waker = Waker(loop)
    before, after = loop.create_future(), loop.create_future()
    try:
        for waiter in (before, _Failing(), after):
            waker.wake(waiter)
        loop.run_until_complete(asyncio.wait_for(asyncio.gather(before, after), 5))
        (context,) = reported
        assert str(context["exception"]) == "connection code failed"
    finally:
        loop.close()


def test_waker_on_a_closed_loop_raises() -> None:
    loop = asyncio.new_event_loop()
    waker = Waker(loop)
    waiter = loop.create_future()
    loop.close()
    for _ in range(2):  # the failed schedule is not remembered as pending
        with pytest.raises(RuntimeError):
            waker.wake(waiter)


def test_pool_grows_only_when_every_thread_is_taken() -> None:
    stats = PoolStats("grow", 4, threshold=0)
    pool = ThreadPool(4, stats, name="test-grow")
    gate = threading.Event()
    try:
        for _ in range(5):  # one after another: the one thread serves them all
            done = threading.Event()
            pool.submit(done.set)
            assert done.wait(5)
            wait_until(lambda: stats.busy == 0, timeout=5)
        assert pool.threads == 1
        started = threading.Semaphore(0)

        def hold() -> None:
            started.release()
            gate.wait(5)

        for _ in range(3):  # three at once: three threads
            pool.submit(hold)
        for _ in range(3):
            assert started.acquire(timeout=5)
        assert pool.threads == 3 and stats.busy == 3
        for _ in range(3):  # more than the pool holds: it stops at its size and they queue
            pool.submit(hold)
        assert pool.threads == 4
        wait_until(lambda: stats.busy == 4 and stats.queued == 2, timeout=5)
        gate.set()
        wait_until(lambda: stats.completed == 11, timeout=5)
        assert stats.busy == 0 and stats.queued == 0
    finally:
        gate.set()
        pool.shutdown()


def test_response_headers_encoded_the_same_from_the_cache() -> None:
    headers = [("Content-Type", "text/plain"), ("Content-Length", "13"), ("X-A", "é")]
    first = _encode_headers(list(headers))
    second = _encode_headers(list(headers))  # now from the cache
    expected = [(b"content-type", b"text/plain"), (b"content-length", b"13"), (b"x-a", b"\xe9")]
    assert first == second == (expected, 13)
    for bad in (("X-B", "€"), ("X-C", ["list"]), ("X-D", "v", "extra"), ("X-E", 1), ["X-F"]):
        for _ in range(2):  # refused every time, never remembered
            with pytest.raises(AppError):
                _encode_headers([bad])  # type: ignore[list-item]
    # A pair given as a list is not cached, and still accepted as it always was.
    assert _encode_headers([["X-G", "v"]]) == ([(b"x-g", b"v")], None)  # type: ignore[list-item]
