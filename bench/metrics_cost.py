"""What --metrics costs: hello world at 64 connections with metrics off, on, and on
with a Prometheus-style scrape every second; then how long a scrape of a 4-worker
server takes.

    python bench/metrics_cost.py [--runs 5] [--duration 5] [--scrapes 50]

The three variants are started once each (the server pinned to CPU 0, wrk to
CPU 1, as in bench/run.py) and measured alternately, run after run, so noise on
a shared machine lands on all three alike; it prints medians and the ratios to
"off". The issue's bars: "on" within 3% of "off", a scrape of 4 workers under 50 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import apps  # noqa: E402
from bench.procs import ServerProcess, free_port  # noqa: E402
from bench.wrk import WrkResult, run_wrk, wrk_command  # noqa: E402

HOST = "127.0.0.1"
VARIANTS = ("off", "on", "on+scrape")


def server(label: str, port: int, metrics_port: int | None, workers: int, logdir: Path) -> ServerProcess:
    argv = [sys.executable, "-m", "steadyloop", "bench.apps:hello", "--host", HOST, "--port", str(port),
            "--no-access-log", "--log-level", "warning"]
    if workers > 1:
        argv += ["--workers", str(workers)]
    if metrics_port is not None:
        argv += ["--metrics", "--metrics-port", str(metrics_port)]
    pin = ["taskset", "-c", "0"] if workers == 1 and _can_pin() else []
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return ServerProcess(label, [*pin, *argv], cwd=ROOT, env=env, log_path=logdir / f"{label}.log")


def _can_pin() -> bool:
    return hasattr(os, "sched_getaffinity") and {0, 1} <= os.sched_getaffinity(0)


def scrape(metrics_port: int) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(f"http://{HOST}:{metrics_port}/metrics", timeout=10) as response:
        response.read()
    return time.perf_counter() - started


def scraping_every_second(metrics_port: int, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        scrape(metrics_port)


def hello_c64(args: argparse.Namespace, logdir: Path) -> None:
    ports = {v: (free_port(), free_port()) for v in VARIANTS}
    servers = {
        v: server(v, port, None if v == "off" else metrics_port, 1, logdir)
        for v, (port, metrics_port) in ports.items()
    }
    results: dict[str, list[WrkResult]] = {v: [] for v in VARIANTS}
    try:
        for v, s in servers.items():
            s.start()
            s.wait_ready(HOST, ports[v][0], "/", lambda body: body == apps.HELLO_BODY, 20)
        for run in range(args.runs):
            for v in VARIANTS:
                port, metrics_port = ports[v]
                stop = threading.Event()
                scraper = threading.Thread(target=scraping_every_second, args=(metrics_port, stop))
                if v == "on+scrape":
                    scraper.start()
                argv = wrk_command(f"http://{HOST}:{port}/", connections=64, duration_s=args.duration,
                                   cpu=1 if _can_pin() else None)
                result = run_wrk(argv, duration_s=args.duration, pipelined=False)
                stop.set()
                if v == "on+scrape":
                    scraper.join()
                results[v].append(result)
                print(f"run {run + 1} {v:10} {result.requests_per_s:10.0f} req/s  p99 {result.p99_ms} ms",
                      flush=True)
    finally:
        for s in servers.values():
            s.stop()
    base = statistics.median(r.requests_per_s for r in results["off"])
    print("\nhello world, 64 connections, medians:")
    for v in VARIANTS:
        rps = statistics.median(r.requests_per_s for r in results[v])
        p99 = statistics.median(r.p99_ms or 0.0 for r in results[v])
        print(f"  {v:10} {rps:10.0f} req/s  {rps / base:6.3f}x off  p99 {p99:.2f} ms")


def scrape_four_workers(args: argparse.Namespace, logdir: Path) -> None:
    port, metrics_port = free_port(), free_port()
    s = server("four-workers", port, metrics_port, 4, logdir)
    try:
        s.start()
        s.wait_ready(HOST, port, "/", lambda body: body == apps.HELLO_BODY, 30)
        for _ in range(200):  # some traffic, so every family has samples
            urllib.request.urlopen(f"http://{HOST}:{port}/", timeout=10).read()
        scrape(metrics_port)  # the first one warms up the supervisor's imports
        times = sorted(scrape(metrics_port) for _ in range(args.scrapes))
    finally:
        s.stop()
    median = statistics.median(times) * 1000
    print(f"\nscrape of a 4-worker server ({args.scrapes} scrapes): median {median:.1f} ms,"
          f" max {times[-1] * 1000:.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--scrapes", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="metrics-cost-") as tmp:
        hello_c64(args, Path(tmp))
        scrape_four_workers(args, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
