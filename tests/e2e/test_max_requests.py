"""--max-requests with one process: serve N requests, then stop gracefully with exit 0,
as uvicorn does (a process manager restarts it)."""

from __future__ import annotations

import subprocess

import httpx
import pytest
from conftest import free_port, spawn

from steadyloop.options import build_config


@pytest.mark.parametrize("flag", ["--max-requests", "--limit-max-requests"])
def test_one_process_stops_gracefully_after_max_requests(flag: str) -> None:
    port = free_port()
    args = ["--port", str(port), flag, "5", "--no-access-log"]
    with spawn(args, port=port, stderr=subprocess.PIPE, text=True) as proc:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            answers = [client.get("/health").status_code for _ in range(5)]
        assert answers == [200] * 5
        assert proc.wait(timeout=15) == 0
        assert proc.stderr is not None
        err = proc.stderr.read()
    assert "served 5 requests (--max-requests): stopping gracefully" in err


def test_run_takes_uvicorns_names_too() -> None:
    config = build_config(None, {"limit_max_requests": 7, "limit_max_requests_jitter": 2})
    assert (config.worker.max_requests, config.worker.max_requests_jitter) == (7, 2)
