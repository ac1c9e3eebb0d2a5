"""Server cost per HTTP/2 cleartext request under h2load: instructions, or CPU time.

`bench/run.py --cases h2c` measures requests/s, which other load on a shared
machine moves by a fifth. This measures what one request costs the server:

    python bench/h2_cost.py instructions            # callgrind, steadyloop
    python bench/h2_cost.py instructions --server hypercorn
    python bench/h2_cost.py cpu --server steadyloop --server hypercorn

instructions: the server runs under `valgrind --tool=callgrind`; after a
warm-up the counters are zeroed (callgrind_control -z), h2load sends
--requests requests, the counters are dumped (-d); the dump's total divided
by the requests. User space only, but noise-free.
cpu: the server pinned to CPU 0, h2load to CPU 1; the server's (and its
workers') user+system CPU time around each h2load run, divided by the
requests; the median of --repeat runs.

Load: h2load -t1 -c16 -m8 (the h2c case), the raw ASGI hello app. Hypercorn
ends an HTTP/2 connection after 1000 requests: keep --requests at or below
16 x 1000 minus the warm-up for it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
H2LOAD = ["h2load", "-t1", "-c16", "-m8"]
WARM_UP = 800


def server_argv(server: str, port: int) -> list[str]:
    if server == "steadyloop":
        return ["-m", "steadyloop", "bench.apps:hello", "--port", str(port), "--no-access-log",
                "--log-level", "warning"]
    if server == "hypercorn":
        # --workers 0: served by this process (callgrind and the CPU clock see it).
        return ["-m", "hypercorn", "--bind", f"127.0.0.1:{port}", "--worker-class", "uvloop",
                "--workers", "0", "--log-level", "warning", "bench.apps:hello"]
    raise SystemExit(f"unknown server {server!r}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("the server did not start") from None
            time.sleep(0.1)  # a starting server has nothing to wait on


@contextlib.contextmanager
def serving(argv: list[str], port: int, timeout: float) -> Iterator[subprocess.Popen[bytes]]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(port, timeout)
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def load(port: int, requests: int, pin: bool = False) -> None:
    argv = [*(["taskset", "-c", "1"] if pin else []), *H2LOAD, "-n", str(requests), f"http://127.0.0.1:{port}/"]
    out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    if f"{requests} succeeded" not in out:
        raise SystemExit(f"h2load: not every request succeeded:\n{out}")


def instructions(server: str, requests: int) -> float:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
                *server_argv(server, port)]
        with serving(argv, port, 120) as proc:
            load(port, WARM_UP)
            subprocess.run(["callgrind_control", "-z", str(proc.pid)], capture_output=True, check=True)
            load(port, requests)
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True, check=True)
        for dump in Path(tmp).glob("callgrind.out*"):
            text = dump.read_text(errors="replace")
            found = re.search(r"^summary:\s+(\d+)", text, re.M)
            if "Trigger: dump" in text and found:
                return int(found.group(1)) / requests
    raise SystemExit("no dump with totals from callgrind_control -d")


def cpu_seconds(pid: int) -> float:
    """User+system time of a process and its children (/proc)."""
    total = 0.0
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for one in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def cpu(server: str, requests: int, repeat: int) -> list[float]:
    port = free_port()
    runs = []
    with serving(["taskset", "-c", "0", sys.executable, *server_argv(server, port)], port, 30) as proc:
        load(port, WARM_UP, pin=True)
        for _ in range(repeat):
            before = cpu_seconds(proc.pid)
            load(port, requests, pin=True)
            runs.append((cpu_seconds(proc.pid) - before) / requests * 1e6)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("measure", choices=("instructions", "cpu"))
    parser.add_argument("--server", action="append", choices=("steadyloop", "hypercorn"))
    parser.add_argument("--requests", type=int, help="default: 2000 (instructions), 15000 (cpu)")
    parser.add_argument("--repeat", type=int, default=3, help="cpu: runs per server (median)")
    args = parser.parse_args()
    for server in args.server or ["steadyloop"]:
        if args.measure == "instructions":
            print(f"{server}: {instructions(server, args.requests or 2000):,.0f} instructions/request")
        else:
            runs = cpu(server, args.requests or 15000, args.repeat)
            shown = ", ".join(f"{r:.1f}" for r in runs)
            print(f"{server}: {statistics.median(runs):.1f} us CPU/request (median of {shown})")


if __name__ == "__main__":
    main()
