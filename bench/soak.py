"""Soak: millions of requests against one steadyloop, watching its memory and descriptors.

    python bench/soak.py [--requests 1000000] [--duration 3600] [--connections 32]
                         [--segment 20] [--app bench.apps:hello] [--workers 1]

Starts steadyloop as a subprocess (access log on, written to /dev/null, so the log
pipeline is soaked too), drives it with wrk in segments of --segment seconds until
--requests responses or --duration seconds, whichever comes first (hours-capable: give a
large --requests), and after each segment samples the resident memory (RSS) and open
descriptors of the server and its workers. The first segment is warm-up; growth is
measured from the sample after it and printed per million requests. Exit status 1 if
wrk saw socket errors or non-2xx answers.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.wrk import run_wrk, wrk_command

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Sample:
    requests: int
    elapsed_s: float
    rss_bytes: int
    fds: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"steadyloop exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)  # a benchmark driver, not a test: polling the port is fine here
    raise SystemExit("steadyloop did not listen within 30 s")


def _measure(pid: int) -> tuple[int, int]:
    """RSS and open descriptors of the server process and its children, summed."""
    root = psutil.Process(pid)
    rss = fds = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            rss += proc.memory_info().rss
            fds += proc.num_fds()
        except psutil.NoSuchProcess:
            continue
    return rss, fds


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--duration", type=float, default=3600.0, help="seconds at most")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--segment", type=float, default=20.0, help="seconds of load between samples")
    parser.add_argument("--app", default="bench.apps:hello")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "steadyloop", args.app, "--port", str(port)]
    command += ["--workers", str(args.workers), "--access-log"]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    samples: list[Sample] = []
    errors = 0
    try:
        _wait_for_port(port, server)
        started = time.monotonic()
        total = 0
        while True:
            argv = wrk_command(
                f"http://127.0.0.1:{port}/",
                connections=args.connections,
                duration_s=args.segment,
                cpu=None,
            )
            result = run_wrk(argv, duration_s=args.segment, pipelined=False)
            total += result.requests
            errors += result.socket_errors + result.non_2xx
            rss, fds = _measure(server.pid)
            sample = Sample(total, time.monotonic() - started, rss, fds)
            samples.append(sample)
            print(
                f"{sample.elapsed_s:7.0f} s  {total:>11,} requests  "
                f"{result.requests_per_s:>9,.0f} req/s  RSS {rss / 2**20:8.2f} MiB  fds {fds}",
                flush=True,
            )
            if total >= args.requests or time.monotonic() - started >= args.duration:
                break
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    if len(samples) < 2:
        print("too short to measure growth: raise --duration or lower --segment")
        return 1
    base, last = samples[0], samples[-1]
    millions = (last.requests - base.requests) / 1e6
    rss_growth = (last.rss_bytes - base.rss_bytes) / 1024 / millions
    fd_growth = (last.fds - base.fds) / millions
    print(
        f"growth after warm-up ({base.requests:,} -> {last.requests:,} requests): "
        f"RSS {rss_growth:+.0f} KiB, fds {fd_growth:+.1f} per million requests; "
        f"errors: {errors}; server exit: {server.returncode}"
    )
    return 0 if errors == 0 and server.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
