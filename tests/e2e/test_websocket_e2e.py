"""WebSocket in a real `steadyloop` process: the access log's session line, the watchdog naming
a blocking WebSocket handler, and a HUP reload under --workers closing sessions with 1012."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from websockets.asyncio.client import connect

from tests.conftest import free_port, spawn, wait_until

APP = "tests.apps.websocket_apps:app"


@contextmanager
def serving(*flags: str) -> Iterator[tuple[int, list[str], subprocess.Popen[str]]]:
    port = free_port()
    args = [APP, "--port", str(port), "--log-sync", *flags]
    with spawn(args, port=port, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        lines: list[str] = []
        assert proc.stdout is not None
        reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
        reader.start()
        yield port, lines, proc


def test_the_access_log_has_one_line_per_session_with_101_and_the_close_code() -> None:
    with serving() as (port, lines, _):

        async def session() -> None:
            async with connect(f"ws://127.0.0.1:{port}/echo?x=1") as ws:
                await ws.send("a")
                await ws.recv()
                await ws.close(4005)

        asyncio.run(asyncio.wait_for(session(), 15))
        line = wait_until(lambda: [x for x in lines if '"GET /echo?x=1 HTTP/1.1" 101' in x], 10)
        assert len(line) == 1 and line[0].rstrip().endswith("(websocket close 4005)")


def test_the_watchdog_names_a_websocket_handler_that_blocks_the_loop() -> None:
    with serving("--block-threshold", "0.1") as (port, lines, _):

        async def session() -> None:
            async with connect(f"ws://127.0.0.1:{port}/block") as ws:
                await ws.send("after the block")
                assert await ws.recv() == "after the block"

        asyncio.run(asyncio.wait_for(session(), 15))
        # A loaded machine can make start-up itself cross the 0.1 s threshold: take the report
        # about the handler, then check how it names the session.
        report = wait_until(lambda: [x for x in lines if "event loop blocked" in x and "/block" in x], 10)
        assert "running WEBSOCKET /block (request " in report[0]


def test_a_hup_reload_under_workers_closes_sessions_with_1012() -> None:
    with serving("--workers", "2") as (port, lines, proc):
        # Count the workers' own lines: the supervisor's start line says "serving on" too, and
        # all three can arrive between two polls.
        wait_until(lambda: sum(" worker " in x and "serving on" in x for x in lines) == 2, 15)

        async def session() -> int | None:
            async with connect(f"ws://127.0.0.1:{port}/echo") as ws:
                proc.send_signal(signal.SIGHUP)
                await ws.wait_closed()
                return ws.close_code

        assert asyncio.run(asyncio.wait_for(session(), 20)) == 1012
