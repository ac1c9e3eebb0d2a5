"""The pre-fork supervisor, end to end: `python -m steadyloop --workers N` as a real
process, real worker processes, real signals, real HTTP load.

Every wait is for something observable (a log line on the stderr pipe, a response
from a given pid, a process exit) with a deadline; nothing sleeps to synchronise.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import psutil
from apps.workers_support import LogTail, load
from conftest import free_port, spawn, stop, wait_until

APP = "apps.workers_app:app"
READY = r"worker (\d+) is ready"


@dataclass
class Running:
    proc: subprocess.Popen[str]
    log: LogTail
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready_pids(self, count: int, start: int = 0, timeout: float = 15.0) -> list[int]:
        return [int(m.group(1)) for m in self.log.wait_all(READY, count, timeout, start)]

    def children(self) -> set[int]:
        return {p.pid for p in psutil.Process(self.proc.pid).children()}

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)


@contextlib.contextmanager
def supervisor(*args: str, app: str = APP, workers: int = 2) -> Iterator[Running]:
    port = free_port()
    argv = [app, "--port", str(port), "--workers", str(workers), "--no-access-log", *args]
    with spawn(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True) as proc:
        assert proc.stderr is not None
        tail = LogTail(proc.stderr)
        running = Running(proc, tail, port)
        try:
            yield running
        finally:
            stop(proc, timeout=20)  # before the tail: it reads until the pipe closes
            tail.join()


def test_killed_worker_is_replaced_within_a_second_while_the_other_serves() -> None:
    with supervisor() as s:
        first, second = s.ready_pids(2)
        with load(s.url, threads=3, keepalive=False) as traffic:
            traffic.wait_pid(first)
            traffic.wait_pid(second)
            mark = s.log.mark()
            killed_at = time.monotonic()
            os.kill(first, signal.SIGKILL)
            s.log.wait_for(rf"worker {first} was killed by SIGKILL: starting a replacement", 5, mark)
            (replacement,) = s.ready_pids(1, mark, timeout=5)
            replaced_in = time.monotonic() - killed_at
            served_by_second = traffic.pids[second]
            traffic.wait_pid(replacement)
            traffic.wait_ok(50)
            assert traffic.pids[second] > served_by_second, "the surviving worker stopped serving"
        assert replaced_in < 1.0, f"replacement took {replaced_in:.2f}s"
        assert s.children() == {second, replacement}
        # Only requests that were inside the killed worker may fail: one per client at most.
        assert len(traffic.failures) <= 3, traffic.failures


def test_hup_reloads_with_zero_failed_requests_and_all_new_workers() -> None:
    # Keep-alive clients: the old workers' connections must close without racing a
    # request (the last call in Server.shutdown, and `connection: close` on responses
    # sent while shutting down).
    with supervisor() as s:
        old = set(s.ready_pids(2))
        with load(s.url, threads=4) as traffic:
            traffic.wait_ok(100)
            mark = s.log.mark()
            s.signal(signal.SIGHUP)
            new = set(s.ready_pids(2, mark))
            for pid in old:
                s.log.wait_for(rf"worker {pid} exited with code 0", 15, mark)
            after_reload = traffic.ok
            traffic.wait_ok(200)
        assert not traffic.failures, traffic.failures[:10]
        assert new.isdisjoint(old)
        assert s.children() == new
        assert traffic.ok > after_reload
        assert set(traffic.pids) & new, "no request reached a new worker"


def test_max_requests_recycles_workers_without_failing_a_request() -> None:
    with supervisor("--max-requests", "500", "--max-requests-jitter", "50") as s:
        first = set(s.ready_pids(2))
        mark = s.log.mark()
        with load(s.url, threads=4) as traffic:
            s.log.wait_all(r"worker \d+ is recycling", 2, 60, mark)
            for pid in first:
                s.log.wait_for(rf"worker {pid} exited with code 0", 30, mark)
            traffic.wait_ok(100)
        assert not traffic.failures, traffic.failures[:10]
        # The limit starts the drain: requests in flight, and one last request per idle
        # keep-alive connection, are still served. Four clients: at most 8 more.
        assert all(count <= 550 + 8 for count in traffic.pids.values()), traffic.pids
        assert len(traffic.pids) >= 3
        assert s.children().isdisjoint(first)


def test_stuck_worker_is_dumped_killed_and_replaced() -> None:
    with supervisor("--worker-timeout", "2", workers=1) as s:
        (stuck,) = s.ready_pids(1)
        mark = s.log.mark()

        def request_stuck() -> None:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{s.url}/stuck", timeout=20)

        client = threading.Thread(target=request_stuck, daemon=True)
        client.start()
        s.log.wait_for(rf"worker {stuck}: its event loop has not run for", 15, mark)
        s.log.wait_for(r'File ".*workers_app\.py", line \d+ in stuck_forever', 5, mark)
        s.log.wait_for(rf"worker {stuck} was killed by SIGKILL", 5, mark)
        (replacement,) = s.ready_pids(1, mark)
        client.join(timeout=10)
        assert not client.is_alive()
        assert httpx.get(s.url, timeout=5).text == str(replacement)


def test_import_error_exits_non_zero_with_one_readable_message() -> None:
    started = time.monotonic()
    with supervisor(app="apps.workers_broken:app") as s:
        code = s.proc.wait(timeout=15)
        s.log.join()
    took = time.monotonic() - started
    assert code != 0
    assert took < 10, f"took {took:.1f}s to give up"
    final = s.log.wait_for(r"no worker could start: (.*)", 1).group(1)
    assert "steadyloop_no_such_module_for_tests" in final
    assert "Traceback" not in s.log.text()
    assert s.log.text().count("booting worker") == 2, "a failed boot was retried"


def test_sigterm_under_load_completes_every_in_flight_request() -> None:
    with supervisor() as s:
        s.ready_pids(2)
        results: list[str] = []

        def slow() -> None:
            try:
                response = httpx.get(f"{s.url}/slow?s=1.5", timeout=20)
                results.append(f"{response.status_code}")
            except httpx.HTTPError as exc:
                results.append(repr(exc))

        mark = s.log.mark()
        clients = [threading.Thread(target=slow, daemon=True) for _ in range(6)]
        with load(s.url, threads=2) as traffic:
            for c in clients:
                c.start()
            s.log.wait_all(r"slow request started", 6, 15, mark)
            traffic.wait_ok(20)
            assert not traffic.failures, traffic.failures[:5]
            s.signal(signal.SIGTERM)
            code = s.proc.wait(timeout=20)
        for c in clients:
            c.join(timeout=10)
        # A failure here has been seen once in a full-suite run and never again (its output
        # was lost): each message carries the server's log, so that the next one explains itself.
        assert code == 0, _log_tail(s)
        assert results == ["200"] * 6, f"{results}\n{_log_tail(s)}"
        s.log.wait_for(r"all workers stopped", 5)


def _log_tail(s: Running, lines: int = 60) -> str:
    return "server log (last lines):\n" + "\n".join(s.log.lines[-lines:])


def test_ttou_removes_a_worker_and_ttin_adds_one() -> None:
    with supervisor() as s:
        first = set(s.ready_pids(2))
        mark = s.log.mark()
        s.signal(signal.SIGTTOU)
        gone = int(s.log.wait_for(r"worker (\d+) exited with code 0", 15, mark).group(1))
        assert gone in first
        assert s.children() == first - {gone}
        assert httpx.get(s.url, timeout=5).status_code == 200
        mark = s.log.mark()
        s.signal(signal.SIGTTIN)
        (added,) = s.ready_pids(1, mark)
        assert s.children() == (first - {gone}) | {added}
        s.signal(signal.SIGTTOU)
        s.log.wait_for(r"worker (\d+) exited with code 0", 15, mark)
        mark = s.log.mark()
        s.signal(signal.SIGTTOU)  # never fewer than one worker
        s.log.wait_for(r"received SIGTTOU: 1 worker wanted", 15, mark)
        assert len(s.children()) == 1
        assert httpx.get(s.url, timeout=5).status_code == 200


def test_second_sigint_forces_the_workers_to_stop() -> None:
    with supervisor("--timeout-graceful-shutdown", "60") as s:
        s.ready_pids(2)
        mark = s.log.mark()
        stuck_request = threading.Thread(target=_quiet_get, args=(f"{s.url}/slow?s=60",), daemon=True)
        stuck_request.start()
        s.log.wait_for(r"slow request started", 10, mark)
        s.signal(signal.SIGINT)
        s.log.wait_for(r"stopping all workers gracefully", 10, mark)
        s.signal(signal.SIGINT)
        assert s.proc.wait(timeout=15) == 0
        stuck_request.join(timeout=10)


def _quiet_get(url: str) -> None:
    with contextlib.suppress(httpx.HTTPError):
        httpx.get(url, timeout=70)


def test_workers_exit_when_the_supervisor_is_killed() -> None:
    with supervisor() as s:
        pids = s.ready_pids(2)
        s.proc.kill()
        s.proc.wait(timeout=5)

        def all_gone() -> bool:
            return not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids)

        wait_until(all_gone, timeout=40)


def test_lifespan_startup_failure_in_every_worker_exits_with_its_message() -> None:
    with supervisor(app="apps.workers_lifespan_fails:app") as s:
        code = s.proc.wait(timeout=15)
        s.log.join()
    assert code == 3  # the worker's own exit code for a failed startup
    assert "database unreachable" in s.log.wait_for(r"no worker could start: (.*)", 1).group(1)
