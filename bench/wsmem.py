"""Memory per idle open WebSocket: a server's RSS before and after N idle sockets, over N.

    python -m bench.wsmem [--sockets 1000] [--servers steadyloop,uvicorn]

Each server serves `bench.apps:ws_echo` (an app that accepts and waits in
receive(), as a chat or notification endpoint does). Compression is not
offered: the number is the server's own cost per socket, without zlib's.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench.procs import free_port
from bench.wsload import EchoClient, client_frame

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "steadyloop": ["-m", "steadyloop", "bench.apps:ws_echo", "--no-access-log", "--log-level", "warning"],
    "uvicorn": [
        "-m", "uvicorn", "bench.apps:ws_echo", "--loop", "uvloop", "--http", "httptools",
        "--ws", "websockets-sansio", "--no-access-log", "--log-level", "warning",
    ],
}  # fmt: skip


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def open_idle(port: int, count: int) -> list[asyncio.Transport]:
    loop = asyncio.get_running_loop()
    frame = client_frame(b"x")
    transports = []
    for _ in range(count):
        opened: asyncio.Future[None] = loop.create_future()
        transport, _ = await loop.create_connection(
            lambda: EchoClient("127.0.0.1", port, frame, 3, opened),  # noqa: B023
            "127.0.0.1",
            port,
        )
        await opened
        transports.append(transport)
    return transports


async def measure(name: str, sockets: int) -> float:
    port = free_port()
    argv = [sys.executable, *COMMANDS[name], "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(argv, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                warm = await open_idle(port, 10)  # up, and its first sockets paid for
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        before = rss_kib(server.pid)
        idle = await open_idle(port, sockets)
        await asyncio.sleep(1.0)  # let the server settle what it allocated for them
        after = rss_kib(server.pid)
        for transport in warm + idle:
            transport.close()
        return (after - before) / sockets
    finally:
        server.terminate()
        server.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.wsmem", description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--servers", default="steadyloop,uvicorn")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, args.sockets * 2 + 100), hard), hard))
    for name in args.servers.split(","):
        per_socket = asyncio.run(measure(name, args.sockets))
        print(f"{name:10} {per_socket:6.1f} KiB per idle WebSocket ({args.sockets} sockets)", flush=True)


if __name__ == "__main__":
    main()
