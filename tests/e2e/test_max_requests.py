"""--max-requests with one process: serve N requests, then stop gracefully with exit 0,
as uvicorn does (a process manager restarts it)."""

from __future__ import annotations

import subprocess

import httpx
from conftest import free_port, spawn


def test_one_process_stops_gracefully_after_max_requests() -> None:
    port = free_port()
    args = ["--port", str(port), "--max-requests", "5", "--no-access-log"]
    with spawn(args, port=port, stderr=subprocess.PIPE, text=True) as proc:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            answers = [client.get("/health").status_code for _ in range(5)]
        assert answers == [200] * 5
        assert proc.wait(timeout=15) == 0
        assert proc.stderr is not None
        err = proc.stderr.read()
    assert "served 5 requests (--max-requests): stopping gracefully" in err
