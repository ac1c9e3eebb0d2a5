"""The access log shows what the app sees: the client a trusted proxy names, the root path."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import free_port, spawn, wait_until
from tests.e2e.test_cli import read_log


@pytest.fixture
def logfile() -> Iterator[Any]:
    with tempfile.TemporaryFile("w+") as file:
        yield file


def serve_and_get(logfile: Any, extra: list[str], headers: dict[str, str]) -> dict[str, Any]:
    port = free_port()
    args = ["apps.basic:echo", "--port", str(port), "--root-path", "/api", *extra]
    with spawn(args, port=port, stdout=logfile, stderr=logfile):
        seen: dict[str, Any] = httpx.get(f"http://127.0.0.1:{port}/items?x=1", headers=headers).json()
        wait_until(lambda: "GET /api/items?x=1" in read_log(logfile))
    return seen


def access_line(logfile: Any) -> str:
    return next(line for line in read_log(logfile).splitlines() if "GET /api/items?x=1" in line)


def test_a_trusted_proxys_client_and_the_root_path_are_logged(logfile: Any) -> None:
    seen = serve_and_get(logfile, [], {"X-Forwarded-For": "203.0.113.7, 127.0.0.1"})
    assert seen["client"][0] == "203.0.113.7" and seen["root_path"] == "/api"
    line = access_line(logfile)
    assert line.startswith("203.0.113.7:0 - - [")
    assert '"GET /api/items?x=1 HTTP/1.1" 200' in line


def test_an_untrusted_forwarded_for_is_neither_seen_nor_logged(logfile: Any) -> None:
    seen = serve_and_get(logfile, ["--forwarded-allow-ips", "10.0.0.1"], {"X-Forwarded-For": "203.0.113.7"})
    assert seen["client"][0] == "127.0.0.1"
    line = access_line(logfile)
    assert line.startswith("127.0.0.1:") and "203.0.113.7" not in line
