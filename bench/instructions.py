"""Instructions per request, counted by callgrind: a hot-path A/B that noise cannot move.

On a shared 2-core machine requests/s moves by 20% from one run to the next.
Instruction counts do not: valgrind counts every user-space instruction the
server process executes, whatever else the machine is doing. The kernel's
share (recv, send, epoll) is not counted, so the wall-clock ratio between two
servers is smaller than the instruction ratio; use this to compare two
versions of steadyloop's hot path, or steadyloop with uvicorn on the Python
side, and bench/run.py for the wall-clock truth.

Method: each server runs under `valgrind --tool=callgrind` twice, serving a
small and a large number of keep-alive requests (8 connections, one request in
flight on each); the difference divided by the difference in requests cancels
start-up and shutdown. With `--pipeline N` each connection gets N requests per
write (and the client reads N responses before the next write): the pipelined cost.

    python bench/instructions.py                         # steadyloop and uvicorn, raw ASGI hello
    python bench/instructions.py --servers steadyloop --app bench.apps:hello
    python bench/instructions.py --app bench.apps:fastapi_app --path /json
    python bench/instructions.py --connections 256     # does cost grow with open connections?
    python bench/instructions.py --servers steadyloop --pipeline 16

Needs valgrind (apt-get install valgrind). Takes about a minute per server.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = 8
# Valgrind start-up (and shutdown, which writes the profile) is slow on a loaded machine.
START_TIMEOUT = 300.0
STOP_TIMEOUT = 120.0
KEEP_DIR: Path | None = None  # --keep: where the callgrind profiles are kept


def server_command(server: str, app: str, port: int, extra: list[str]) -> list[str]:
    py = sys.executable
    if server == "steadyloop":
        return [
            py,
            "-m",
            "steadyloop",
            app,
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
            *extra,
        ]
    if server == "uvicorn":
        return [
            py,
            "-m",
            "uvicorn",
            app,
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            *extra,
        ]
    raise SystemExit(f"unknown server {server!r}")


def _response_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise SystemExit("the app must answer with a Content-Length (the client counts bytes)")


def drive(port: int, requests: int, path: str, deadline: float, connections: int, pipeline: int = 1) -> int:
    """Send at least `requests` GETs over `connections` keep-alive connections, `pipeline` in
    flight on each (sent with one write); returns how many were sent."""
    while True:
        try:
            socks = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(connections)]
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)  # valgrind takes seconds to start the server; nothing to wait on
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode() * pipeline
    buffers = [b""] * connections
    done = 0
    while done < requests:
        for sock in socks:
            sock.sendall(request)
        for i, sock in enumerate(socks):
            buf = buffers[i]
            for _ in range(pipeline):
                while True:
                    end = buf.find(b"\r\n\r\n")
                    if end != -1:
                        total = end + 4 + _response_length(buf[:end])
                        if len(buf) >= total:
                            buf = buf[total:]
                            break
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise SystemExit("server closed the connection")
                    buf += chunk
            buffers[i] = buf
        done += connections * pipeline
    for sock in socks:
        sock.close()
    return done


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT (the profile is written at exit); if the server does not end in time, kill its
    whole process group: no server, valgrind or worker is ever left behind."""
    try:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=STOP_TIMEOUT)
    finally:
        # Also a worker the server left behind, if any; and the server itself if it hung.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def count(
    server: str, app: str, path: str, requests: int, extra: list[str], connections: int, pipeline: int = 1
) -> tuple[int, int]:
    """(instructions, requests served) for one run under callgrind."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        proc = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                *server_command(server, app, port, extra),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # A fixed hash seed: start-up then executes the same instructions in both runs
            # (string hashes decide dict layouts), so the difference is the requests' alone.
            env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0"},
            start_new_session=True,  # its own process group, killed whole if it hangs
        )
        try:
            served = drive(port, requests, path, time.monotonic() + START_TIMEOUT, connections, pipeline)
        finally:
            _stop(proc)
        profile = out.read_text()
        if KEEP_DIR is not None:  # for callgrind_annotate
            (KEEP_DIR / f"callgrind.{server}.{requests}.out").write_text(profile)
        match = re.search(r"^(?:summary|totals): (\d+)", profile, re.M)
        if match is None:
            raise SystemExit(f"no totals in callgrind output for {server}")
        return int(match.group(1)), served


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--servers", default="steadyloop,uvicorn")
    parser.add_argument("--app", default="bench.apps:hello")
    parser.add_argument("--path", default="/")
    parser.add_argument("--small", type=int, default=800)
    parser.add_argument("--large", type=int, default=4800)
    parser.add_argument("--steadyloop-args", default="", help="extra flags for steadyloop, quoted")
    parser.add_argument(
        "--connections",
        type=int,
        default=CONNECTIONS,
        help="keep-alive connections, one request in flight on each",
    )
    parser.add_argument(
        "--pipeline",
        type=int,
        default=1,
        help="requests sent with one write on each connection (HTTP/1.1 pipelining)",
    )
    parser.add_argument("--keep", type=Path, help="keep the callgrind profiles in this folder")
    args = parser.parse_args()
    global KEEP_DIR
    KEEP_DIR = args.keep
    if KEEP_DIR is not None:
        KEEP_DIR.mkdir(parents=True, exist_ok=True)
    results = {}
    for server in args.servers.split(","):
        extra = args.steadyloop_args.split() if server == "steadyloop" else []
        small, small_n = count(
            server, args.app, args.path, args.small, extra, args.connections, args.pipeline
        )
        large, large_n = count(
            server, args.app, args.path, args.large, extra, args.connections, args.pipeline
        )
        per_request = (large - small) / (large_n - small_n)
        results[server] = per_request
        print(
            f"{server:12s} {per_request:10,.0f} instructions per request "
            f"({args.app} {args.path}, {args.connections} connections"
            + (f", pipelined x{args.pipeline}" if args.pipeline > 1 else "")
            + ")"
        )
    if "steadyloop" in results and "uvicorn" in results:
        print(f"uvicorn / steadyloop: {results['uvicorn'] / results['steadyloop']:.2f}x")


if __name__ == "__main__":
    main()
