"""--metrics end to end: a real supervisor with real workers, scraped over a real socket.

Known traffic goes in (statuses, a block at a known line, a pool wait, a log sink
nobody reads), and the families must say exactly that; a worker killed with
SIGKILL is counted as a restart and takes none of the totals with it. Every wait
is for a condition with a deadline.
"""

from __future__ import annotations

import itertools
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest
from apps.metrics_support import BLOCK_LOCATION, Running, metrics_server
from conftest import wait_until


def test_families_and_values_after_known_traffic_with_two_workers() -> None:
    with metrics_server(
        "--threads", "1", "--block-threshold", "0.05", "--log-queue-records", "50",
        "--log-drain-timeout", "0.5",
    ) as server:  # fmt: skip
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for _ in range(10):
                assert client.get("/").status_code == 200
            for _ in range(3):
                assert client.get("/missing").status_code == 404
            for _ in range(2):
                assert client.get("/boom").status_code == 500
            assert client.get("/block", params={"s": "0.4"}).status_code == 200
            assert client.get("/pool").status_code == 200
            assert client.get("/log", params={"n": "3000"}).status_code == 200

        def counted() -> bool:
            return (
                server.total("steadyloop_requests_total", status_class="2xx", protocol="HTTP/1.1") == 13
                and server.total("steadyloop_requests_total", status_class="4xx") == 3
                and server.total("steadyloop_requests_total", status_class="5xx") == 2
            )

        wait_until(counted, timeout=15)
        assert server.total("steadyloop_request_duration_seconds_count") == 18
        # The block, at the app's own line, and its seconds.
        wait_until(
            lambda: server.total("steadyloop_loop_blocks_total", location=BLOCK_LOCATION) == 1, timeout=15
        )
        assert server.total("steadyloop_loop_blocked_seconds_total") >= 0.3
        assert server.total("steadyloop_loop_lag_seconds_count") > 0

        # One of the two pool jobs waited ~0.3 s for the only thread.
        def long_waits() -> float:
            return server.total("steadyloop_threadpool_wait_seconds_count", pool="executor") - server.total(
                "steadyloop_threadpool_wait_seconds_bucket", pool="executor", le="0.1"
            )

        wait_until(lambda: long_waits() == 1, timeout=15)
        assert server.total("steadyloop_threadpool_size", pool="executor") == 2  # 1 per worker
        # The stalled stdout: the queue of 50 filled and the rest of 3000 INFO lines dropped.
        wait_until(lambda: server.total("steadyloop_log_records_dropped_total", level="INFO") > 2000, 15)
        queue = [v for (n, _), v in server.samples().items() if n == "steadyloop_log_queue_records"]
        assert len(queue) == 2  # one gauge per worker
        assert server.total("steadyloop_workers") == 2
        assert _live_labels(server) == {"0", "1"}

        # OpenMetrics when the scraper asks for it (Prometheus does), from the same families.
        response = httpx.get(
            server.metrics_url + "/metrics",
            headers={"accept": "application/openmetrics-text; version=1.0.0; charset=utf-8"},
        )
        assert response.headers["content-type"].startswith("application/openmetrics-text")
        assert response.text.endswith("# EOF\n")
        assert "steadyloop_loop_blocks_total{" in response.text

        status = httpx.get(server.metrics_url + "/status.json").json()
        blocks = [b for w in status["workers"] for b in w["recent_blocks"] if b.get("path") == "/block"]
        assert [b["location"] for b in blocks] == [BLOCK_LOCATION]
        # Its sampled stack, whether or not the rate limit let its log report through.
        assert f"{BLOCK_LOCATION} in hold_the_loop" in blocks[0]["stacks"][0]["frames"]


def test_counters_survive_a_worker_killed_with_sigkill_and_a_reload() -> None:
    with metrics_server() as server:
        seen: list[float] = []
        done = threading.Event()

        def scrape_all_along() -> None:
            while not done.is_set():
                seen.append(server.total("steadyloop_requests_total"))

        with httpx.Client(base_url=server.url, timeout=30) as client:
            for _ in range(20):
                client.get("/")
            wait_until(lambda: server.total("steadyloop_requests_total") == 20, timeout=15)
            scraper = threading.Thread(target=scrape_all_along, daemon=True)
            scraper.start()
            try:
                victim = server.workers()[0]
                psutil.Process(victim).kill()
                wait_until(
                    lambda: (
                        server.total("steadyloop_worker_restarts_total", reason="crashed") == 1
                        and server.total("steadyloop_workers") == 2
                        and victim not in server.workers()
                    ),
                    timeout=20,
                )
                assert server.total("steadyloop_requests_total") == 20  # the dead worker's 10 or so stay
                # The replacement takes over its predecessor's label.
                wait_until(lambda: _live_labels(server) == {"0", "1"}, timeout=10)
                for _ in range(10):
                    client.get("/")
                wait_until(lambda: server.total("steadyloop_requests_total") == 30, timeout=15)
                before = set(server.workers())
                server.proc.send_signal(signal.SIGHUP)
                wait_until(
                    lambda: (
                        server.total("steadyloop_worker_restarts_total", reason="reload") == 2
                        and not before & set(server.workers())
                    ),
                    timeout=30,
                )
                assert server.total("steadyloop_requests_total") == 30
            finally:
                done.set()
                scraper.join()
        assert seen and all(a <= b for a, b in itertools.pairwise(seen)), "a total went backwards"
        # During a reload old and new workers live side by side: the new take the next free labels.
        wait_until(lambda: _live_labels(server) == {"2", "3"}, timeout=10)


def _live_labels(server: Running) -> set[str | None]:
    return {dict(ls).get("worker") for (n, ls) in server.samples() if n == "steadyloop_connections"}


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", b"400"),
        (b"GET /metrics HTTP/1.1\r\n folded: header\r\n\r\n", b"400"),
        (b"GET metrics HTTP/1.1\r\n\r\n", b"400"),
        (b"GET /metrics HTTP/2.0\r\n\r\n", b"400"),
        (b"POST /metrics HTTP/1.1\r\ncontent-length: 0\r\n\r\n", b"405"),
        (b"GET /metrics HTTP/1.1\r\nx: " + b"a" * 9000 + b"\r\n\r\n", b"431"),
        (b"GET /nothing-here HTTP/1.1\r\n\r\n", b"404"),
    ],
    ids=["garbage", "no-colon", "obs-fold", "bad-target", "bad-version", "post", "huge-head", "unknown"],
)
def test_bad_requests_to_the_metrics_port_are_refused_and_the_server_runs_on(
    request_bytes: bytes, status: bytes, single_process: Running
) -> None:
    answer = _raw(single_process.metrics_port, request_bytes)
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
    assert httpx.get(single_process.metrics_url + "/metrics").status_code == 200
    assert httpx.get(single_process.url + "/").status_code == 200


@pytest.fixture(scope="module")
def single_process() -> Iterator[Running]:
    with metrics_server(workers=1) as server:
        yield server


def test_one_process_serves_metrics_from_its_own_thread(single_process: Running) -> None:
    httpx.get(single_process.url + "/")
    wait_until(lambda: single_process.total("steadyloop_requests_total") >= 1)
    assert single_process.log.wait_for(r"metrics and status page on http://127\.0\.0\.1:")
    page = httpx.get(single_process.metrics_url + "/")
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert not re.search(rb"\b(src|href)\s*=|<link|@import|url\(", page.content)  # nothing to fetch
    head = httpx.head(single_process.metrics_url + "/metrics")
    assert head.status_code == 200 and head.content == b""


def test_a_scrape_answers_while_a_workers_loop_is_blocked_and_shows_it() -> None:
    """The supervisor answers from shared memory: a stuck loop cannot hold a scrape up."""
    with metrics_server("--block-threshold", "0.05") as server:
        blocker = threading.Thread(
            target=lambda: httpx.get(server.url + "/block", params={"s": "3"}, timeout=30), daemon=True
        )
        blocker.start()

        def blocked_in_the_handler() -> list[dict[str, Any]]:
            # Asked again while a loaded machine blocks the worker's loop elsewhere first
            # (start-up, outside the app): the report wanted is the one about the handler.
            status = httpx.get(server.metrics_url + "/status.json", timeout=5).json()
            now = [w["live"]["blocked_now"] for w in status["workers"] if w["live"]["blocked_now"]]
            return [block for block in now if block["location"] == BLOCK_LOCATION]

        (stuck,) = wait_until(blocked_in_the_handler, timeout=15)
        assert stuck["seconds"] < 3.5  # answered while the 3 s block was still going on
        assert server.total("steadyloop_loop_blocked_now_seconds") > 0
        blocker.join()


def test_scraping_under_load_leaves_the_apps_latency_alone() -> None:
    """Loose on purpose (a shared 2-core box): scraping flat out must not make the app's p99
    several times worse, which serving scrapes on a worker's loop would."""

    def p99(seconds: float, scrape: bool) -> float:
        latencies: list[float] = []
        stop_scraping = threading.Event()

        def scraper() -> None:
            while not stop_scraping.is_set():
                httpx.get(server.metrics_url + "/metrics", timeout=10)

        thread = threading.Thread(target=scraper, daemon=True)
        if scrape:
            thread.start()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                started = time.perf_counter()
                client.get("/")
                latencies.append(time.perf_counter() - started)
        stop_scraping.set()
        if scrape:
            thread.join()
        latencies.sort()
        return latencies[int(len(latencies) * 0.99)]

    with metrics_server() as server:
        p99(0.5, scrape=False)  # warm up
        quiet = p99(2.0, scrape=False)
        scraped = p99(2.0, scrape=True)
        assert scraped < max(5 * quiet, 0.05), (
            f"p99 {quiet * 1000:.1f} ms alone, {scraped * 1000:.1f} scraped"
        )


def test_recycled_and_stuck_workers_are_counted_by_reason() -> None:
    # The stuck loop first, while both workers are ready: a request that lands on a worker
    # still booting or already recycling (--max-requests) is not watched for a stuck loop
    # (--worker-timeout applies to ready workers), so it must not come after the recycling.
    with metrics_server("--max-requests", "5", "--worker-timeout", "2") as server:
        # A loop stuck past --worker-timeout: killed after a stack dump, counted as stuck_loop.
        cut_off: list[Exception] = []

        def stuck_request() -> None:
            try:
                httpx.get(server.url + "/block", params={"s": "60"}, timeout=60)
            except httpx.HTTPError as exc:  # its worker is killed under it
                cut_off.append(exc)

        stuck = threading.Thread(target=stuck_request, daemon=True)
        stuck.start()
        wait_until(
            lambda: server.total("steadyloop_worker_restarts_total", reason="stuck_loop") == 1, timeout=30
        )
        stuck.join(timeout=30)
        assert cut_off
        wait_until(lambda: server.total("steadyloop_workers") == 2, timeout=20)
        # --max-requests: the recycled worker's last counts are published on its way out.
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for _ in range(12):
                client.get("/", headers={"connection": "close"})
        wait_until(
            lambda: server.total("steadyloop_worker_restarts_total", reason="max_requests") >= 1, timeout=20
        )
        wait_until(lambda: server.total("steadyloop_requests_total") == 12, timeout=15)
        assert server.total("steadyloop_worker_restarts_total", reason="crashed") == 0
        assert server.total("steadyloop_worker_restarts_total", reason="stuck_loop") == 1
