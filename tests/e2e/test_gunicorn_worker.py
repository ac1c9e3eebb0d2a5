"""steadyloop.integrations.gunicorn.SteadyloopWorker under a real gunicorn master: serve, recycle
(--max-requests), dump and replace a stuck worker (--timeout), stop on TERM."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import httpx
import pytest
from apps.workers_support import LogTail, load
from conftest import ROOT, free_port, stop

pytest.importorskip("gunicorn")

BOOTED = r"Booting worker with pid: (\d+)"


@contextlib.contextmanager
def gunicorn(*args: str) -> Iterator[tuple[subprocess.Popen[str], LogTail, str]]:
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, os.path.join(ROOT, "tests"), env.get("PYTHONPATH", "")])
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "-k",
        "steadyloop.integrations.gunicorn.SteadyloopWorker",
        "-b",
        f"127.0.0.1:{port}",
        "--no-control-socket",
        *args,
        "apps.workers_app:app",
    ]
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    assert proc.stderr is not None
    tail = LogTail(proc.stderr)
    try:
        yield proc, tail, f"http://127.0.0.1:{port}"
    finally:
        stop(proc, timeout=20)
        tail.join()


def test_serves_requests_and_stops_gracefully_on_term() -> None:
    with gunicorn("-w", "2") as (proc, log, url):
        log.wait_all(r"worker \d+ serving on http://", 2)
        response = httpx.get(url, timeout=5)
        assert response.status_code == 200
        assert response.headers["server"] == "steadyloop"
        done: list[int] = []

        def slow() -> None:
            done.append(httpx.get(f"{url}/slow?s=1", timeout=20).status_code)

        client = threading.Thread(target=slow)
        mark = log.mark()
        client.start()
        log.wait_for("slow request started", 10, mark)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        client.join(timeout=10)
        assert done == [200]


def test_max_requests_recycles_the_worker_without_failures() -> None:
    with gunicorn("-w", "1", "--max-requests", "200") as (_proc, log, url):
        (first,) = (int(m.group(1)) for m in log.wait_all(BOOTED, 1))
        log.wait_for(r"serving on", 15)
        mark = log.mark()
        with load(url, threads=3) as traffic:
            log.wait_for(r"served 200 requests \(--max-requests\)", 30, mark)
            second = int(log.wait_for(BOOTED, 30, mark).group(1))
            traffic.wait_pid(second, timeout=30)
        assert second != first
        assert set(traffic.pids) == {first, second}
        # gunicorn starts the replacement only after the old worker exits: requests wait
        # in the listen backlog meanwhile, and none fails.
        assert not traffic.failures, traffic.failures[:5]


def test_timeout_dumps_the_stuck_stack_and_gunicorn_replaces_the_worker() -> None:
    with gunicorn("-w", "1", "--timeout", "2") as (_proc, log, url):
        first = int(log.wait_for(BOOTED).group(1))
        log.wait_for(r"serving on", 15)
        mark = log.mark()

        def stuck() -> None:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{url}/stuck", timeout=30)

        client = threading.Thread(target=stuck, daemon=True)
        client.start()
        log.wait_for(rf"WORKER TIMEOUT \(pid:{first}\)", 20, mark)
        log.wait_for(r'File ".*workers_app\.py", line \d+ in stuck_forever', 10, mark)
        second = int(log.wait_for(BOOTED, 20, mark).group(1))
        assert second != first
        log.wait_for(r"serving on", 15, mark)
        assert httpx.get(url, timeout=5).text == str(second)
        client.join(timeout=10)
