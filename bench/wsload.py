"""WebSocket echo load: N connections, each sending one text message and waiting for its echo.

    python -m bench.wsload --port P --connections 32 --size 64 --duration 5
        -> one JSON line: {"messages_per_s": ..., "messages": ..., "p50_ms": ..., "p99_ms": ...}

A load generator must be cheaper than the servers it measures, so this one is
raw asyncio (uvloop when installed) and does no WebSocket library work per
message: the masked frame is built once (a fixed mask is as valid as a random
one for a benchmark), and an echo is recognised by its length, since each
server frame for an uncompressed `size`-byte text is `2 + size` bytes
(size < 126). Compression is not offered. Run it pinned to its own CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import time

_MASK = b"\x37\xfa\x21\x3d"


def client_frame(payload: bytes) -> bytes:
    masked = bytes(b ^ _MASK[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + _MASK + masked


class EchoClient(asyncio.Protocol):
    def __init__(
        self, host: str, port: int, frame: bytes, reply_size: int, opened: asyncio.Future[None]
    ) -> None:
        self.request = (
            f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
            + base64.b64encode(os.urandom(16)).decode()
            + "\r\n\r\n"
        ).encode()
        self.frame = frame
        self.reply_size = reply_size
        self.opened = opened
        self.handshaken = False
        self.buffered = 0
        self.head = b""
        self.sent_at = 0.0
        self.counting = False
        self.count = 0  # echoes while counting (the measured window)
        self.echoed = 0  # every echo, warm-up included
        self.latencies: list[float] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if not self.handshaken:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end == -1:
                return
            if not self.head.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(RuntimeError(self.head[:200].decode("latin-1")))
                return
            self.handshaken = True
            self.opened.set_result(None)
            data = self.head[end + 4 :]
        self.buffered += len(data)
        while self.buffered >= self.reply_size:
            self.buffered -= self.reply_size
            now = time.perf_counter()
            self.echoed += 1
            if self.counting:
                self.count += 1
                if self.count % 16 == 0:  # a latency sample now and then is enough
                    self.latencies.append(now - self.sent_at)
            self.send()

    def send(self) -> None:
        assert self.transport is not None
        self.sent_at = time.perf_counter()
        self.transport.write(self.frame)


async def main(
    host: str, port: int, connections: int, size: int, duration: float, warmup: float
) -> dict[str, float | None]:
    loop = asyncio.get_running_loop()
    frame = client_frame(b"x" * size)
    clients: list[EchoClient] = []
    for _ in range(connections):
        opened: asyncio.Future[None] = loop.create_future()
        reply = 2 + size
        _, client = await loop.create_connection(
            lambda: EchoClient(host, port, frame, reply, opened),  # noqa: B023
            host,
            port,
        )
        await opened
        clients.append(client)
    for client in clients:
        client.send()
    await asyncio.sleep(warmup)
    for client in clients:
        client.counting = True
    started = time.perf_counter()
    await asyncio.sleep(duration)
    elapsed = time.perf_counter() - started
    for client in clients:
        client.counting = False
    total = sum(c.count for c in clients)
    latencies = sorted(x for c in clients for x in c.latencies)
    for client in clients:
        assert client.transport is not None
        client.transport.close()
    p99 = latencies[int(len(latencies) * 0.99)] * 1000 if latencies else None
    return {
        "messages_per_s": total / elapsed,
        "messages": total,
        "echoed": sum(c.echoed for c in clients),
        "p50_ms": statistics.median(latencies) * 1000 if latencies else None,
        "p99_ms": p99,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.wsload", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--size", type=int, default=64, help="message bytes (under 126)")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument(
        "--server-pid",
        type=int,
        help="also report this server process's CPU time per message (load-independent-ish)",
    )
    args = parser.parse_args()
    if not 0 < args.size < 126:
        parser.error("--size must be 1..125")
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    cpu_before = cpu_seconds(args.server_pid) if args.server_pid else 0.0
    result = runner(main(args.host, args.port, args.connections, args.size, args.duration, args.warmup))
    if args.server_pid and result["echoed"]:
        # CPU time over the whole run (handshakes and warm-up too), over every echo.
        spent = cpu_seconds(args.server_pid) - cpu_before
        result["server_cpu_us_per_message"] = spent * 1e6 / (result["echoed"] or 1)
    print(json.dumps(result))


if __name__ == "__main__":
    cli()
