"""`--threads N` governs sync work in ASGI apps too: FastAPI `def` endpoints, the default executor."""

from __future__ import annotations

import asyncio
import re
import subprocess
import threading
from typing import Any

import httpx
import pytest
from conftest import free_port, running_server, spawn, wait_until
from wsgi.support import Records

from steadyloop.observe.threadpool import POOLS


class Lines:
    """Reads a pipe on a thread, so the test can wait for a line with a deadline."""

    def __init__(self, pipe: Any) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: Any) -> None:
        for raw in iter(pipe.readline, b""):
            self.lines.append(raw.decode("utf-8", "replace"))

    def find(self, text: str) -> str | None:
        return next((line for line in list(self.lines) if text in line), None)

    def join(self) -> None:
        self._thread.join(10)


def test_threads_4_with_8_slow_fastapi_def_requests() -> None:
    port = free_port()
    args = ["apps.wsgi_fastapi_threads:app", "--port", str(port), "--threads", "4"]
    args += ["--block-threshold", "0.05", "--no-access-log"]
    with spawn(args, port=port, stderr=subprocess.PIPE) as proc:
        stderr = Lines(proc.stderr)
        base = f"http://127.0.0.1:{port}"
        statuses: list[int] = []

        def call() -> None:
            statuses.append(httpx.get(base + "/slow", timeout=15).status_code)

        def stats() -> dict[str, Any]:
            data: dict[str, Any] = httpx.get(base + "/stats", timeout=5).json()
            return data

        clients = [threading.Thread(target=call) for _ in range(8)]
        for t in clients:
            t.start()
        try:
            # Four run at once; the other four wait for a thread, and the pool says so.
            wait_until(lambda: stats()["pools"]["anyio"]["queued"] == 4, timeout=10)
            seen = stats()
            assert seen["running"] == 4
            assert seen["pools"]["anyio"]["busy"] == 4
            assert seen["pools"]["anyio"]["size"] == 4
            report = wait_until(lambda: stderr.find("for a pool thread"), timeout=10)
            # The first report comes when the oldest waiter crosses the threshold, however many
            # have queued behind it by then.
            pattern = r"GET /slow has waited \d+ ms so far for a pool thread; 4 of 4 busy, [1-4] queued"
            assert re.search(pattern + r" \(pool anyio\)", report), report
        finally:
            httpx.get(base + "/release", timeout=5)
            for t in clients:
                t.join(15)
        assert statuses == [200] * 8
        final = stats()
        assert final["most"] == 4
        assert final["done"] == 8
        anyio = final["pools"]["anyio"]
        assert anyio["busy"] == 0 and anyio["queued"] == 0
        assert anyio["long_waits"] >= 4
    stderr.join()


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_default_executor_is_sized_and_counted(loop: str) -> None:
    gate = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        running = asyncio.get_running_loop()
        await asyncio.gather(*[running.run_in_executor(None, gate.wait, 10) for _ in range(5)])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    with running_server(app, threads=3, loop=loop) as running:
        result: list[str] = []
        client = threading.Thread(target=lambda: result.append(httpx.get(running.url, timeout=15).text))
        client.start()
        try:
            stats = POOLS["executor"]
            wait_until(lambda: stats.busy == 3 and stats.queued == 2, timeout=5)
            assert stats.size == 3
        finally:
            gate.set()
            client.join(15)
        assert result == ["ok"]
        wait_until(lambda: stats.completed >= 5 and stats.busy == 0, timeout=5)


def test_starlette_threadpool_uses_the_limiter_in_process() -> None:
    from apps import wsgi_fastapi_threads as fa

    fa.gate.clear()
    fa.running = fa.most = fa.done = 0
    with (
        Records("steadyloop.threadpool") as reports,
        running_server(fa.app, threads=2, block_threshold=0.05) as running,
    ):
        results: list[int] = []

        def call() -> None:
            results.append(httpx.get(running.url + "/slow", timeout=15).status_code)

        clients = [threading.Thread(target=call) for _ in range(3)]
        for t in clients:
            t.start()
        try:
            wait_until(lambda: fa.running == 2, timeout=5)
            wait_until(
                lambda: any("for a pool thread; 2 of 2 busy" in m for m in reports.messages()), timeout=5
            )
        finally:
            fa.gate.set()
            for t in clients:
                t.join(15)
        assert results == [200] * 3
        assert fa.most == 2
