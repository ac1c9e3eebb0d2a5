"""Eager start (--eager-start, on by default): an HTTP/1.1 request's first step runs in the
read callback, yet the app sees what a task per request gives it: a current task, a
context of its own, the same task and context across its awaits, anyio and asyncio
timeouts that work, errors answered with a 500. Real server, real sockets, both loops."""

from __future__ import annotations

import asyncio
import contextvars
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from tests.conftest import RunningServer, free_port, running_server, spawn
from tests.rawhttp import RawClient

REQUEST_PATH: contextvars.ContextVar[str] = contextvars.ContextVar("request_path")
TASKS: dict[str, asyncio.Task[Any] | None] = {}  # path -> the current task its last request saw
GATE_TASKS: list[asyncio.Task[Any] | None] = []


async def _answer(send: Any, body: bytes, status: int = 200) -> None:
    headers = [(b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    before = REQUEST_PATH.get("unset")  # what an earlier request left behind, if anything
    REQUEST_PATH.set(path)
    first = asyncio.current_task()
    TASKS[path] = first
    if path == "/plain":
        await _answer(send, f"{before}|{first is not None}".encode())
    elif path == "/awaits":
        await asyncio.sleep(0)
        await receive()
        await asyncio.sleep(0)
        same = asyncio.current_task() is first and first is not None
        await _answer(send, f"{before}|{same}|{REQUEST_PATH.get()}".encode())
    elif path == "/anyio":
        with anyio.CancelScope():
            await anyio.sleep(0)
        with anyio.fail_after(30):
            value = await anyio.to_thread.run_sync(lambda: 42)
        async with asyncio.timeout(30):
            await asyncio.sleep(0)
        await _answer(send, b"%d" % value)
    elif path == "/fails":
        raise RuntimeError("boom in the first step")
    elif path == "/cancels":
        raise asyncio.CancelledError
    elif path == "/fails-later":
        await asyncio.sleep(0)
        raise RuntimeError("boom after an await")
    elif path.startswith("/gate/"):
        gate = GATES.setdefault(int(path.rsplit("/", 1)[1]), Gate())
        GATE_TASKS.append(first)
        await gate.arrive()
        await _answer(send, b"through")
    else:
        await _answer(send, b"not found", 404)


class Gate:
    """Every request waits until `size` of them have arrived: each first step awaits, so
    each request is adopted by a host of its own while the others wait."""

    size = 16

    def __init__(self) -> None:
        self.arrived = 0
        self.event = asyncio.Event()

    async def arrive(self) -> None:
        self.arrived += 1
        if self.arrived == self.size:
            self.event.set()
        await self.event.wait()


GATES: dict[int, Gate] = {}


@pytest.fixture(scope="module", params=["uvloop", "asyncio"])
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with running_server(app, loop=request.param) as running:
        yield running


def _get(server: RunningServer, *paths: str) -> list[tuple[int, bytes]]:
    """The paths in turn, on one keep-alive connection."""
    with RawClient.connect(server.port) as client:
        answers = []
        for path in paths:
            client.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            response = client.response()
            answers.append((response.status, response.body))
        return answers


def test_a_first_step_runs_in_a_task_and_a_context_of_its_own(server: RunningServer) -> None:
    # The second request on the connection does not see the contextvar the first one set.
    assert _get(server, "/plain", "/plain", "/awaits") == [
        (200, b"unset|True"),
        (200, b"unset|True"),
        (200, b"unset|True|/awaits"),
    ]


def test_a_request_that_awaits_keeps_its_task_and_context_to_the_end(server: RunningServer) -> None:
    for _ in range(3):
        assert _get(server, "/awaits") == [(200, b"unset|True|/awaits")]


def test_anyio_cancel_scopes_threads_and_asyncio_timeouts_work_across_awaits(server: RunningServer) -> None:
    assert _get(server, "/anyio", "/anyio") == [(200, b"42"), (200, b"42")]


@pytest.mark.parametrize("path", ["/fails", "/cancels", "/fails-later"])
def test_an_app_that_fails_gets_a_500_and_the_server_serves_on(server: RunningServer, path: str) -> None:
    assert _get(server, path)[0][0] == 500
    assert _get(server, "/plain") == [(200, b"unset|True")]


def test_many_requests_that_await_at_once_each_get_their_own_task(server: RunningServer) -> None:
    key = len(GATES) + 1
    results: list[int] = []

    def one() -> None:
        results.append(httpx.get(f"{server.url}/gate/{key}", timeout=30).status_code)

    threads = [threading.Thread(target=one) for _ in range(Gate.size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == [200] * Gate.size
    tasks = GATE_TASKS[-Gate.size :]
    assert len({id(task) for task in tasks}) == Gate.size and None not in tasks


def test_requests_answered_in_their_first_step_share_the_host_task() -> None:
    # The one difference from a task per request (documented with --eager-start), and
    # what --no-eager-start changes.
    for eager, shared in ((True, True), (False, False)):
        with running_server(app, eager_start=eager) as running:
            _get(running, "/plain")
            first = TASKS["/plain"]
            _get(running, "/plain")
            assert (TASKS["/plain"] is first) is shared


def test_a_worker_with_an_idle_host_task_stops_without_complaint() -> None:
    port = free_port()
    with spawn(
        ["tests.server.test_eager_start:app", "--port", str(port), "--no-access-log"],
        port=port,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert httpx.get(f"http://127.0.0.1:{port}/plain", timeout=10).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/awaits", timeout=10).status_code == 200
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    for complaint in ("destroyed but it is pending", "never awaited", "Traceback"):
        assert complaint not in err, err
