"""A transport without a network, to drive a protocol object byte by byte.

    harness = Harness(app)                 a ServerState on a private event loop
    conn, transport = harness.connect()    a connection_made() with a FakeTransport
    harness.feed(conn, b"GET / ...")       data_received() from the loop, then run the app's tasks
    transport.take()                       what the protocol wrote since the last take()

The loop is real (asyncio's), so app tasks and futures behave as in a server;
only the socket is replaced. `settle()` runs the loop until nothing is ready to
run, never by waiting for time to pass.
"""

from __future__ import annotations

import asyncio
from typing import Any

from steadyloop.options import build_config
from steadyloop.protocols.http1.connection import Http1Connection
from steadyloop.protocols.shared import ServerState


class FakeTransport(asyncio.Transport):
    """Records what the protocol does to it; the test plays the peer and the kernel."""

    def __init__(
        self,
        protocol: asyncio.Protocol,
        loop: asyncio.AbstractEventLoop,
        peer: tuple[str, int] = ("10.0.0.7", 50000),
    ) -> None:
        super().__init__()
        self.protocol = protocol
        self.loop = loop
        self.lost = False
        self.peer = peer
        self.written = bytearray()
        self.writes = 0  # how many write() calls: one per send(2) on a real socket
        self.reading = True
        self.closing = False
        self.eof_written = False
        self.aborted = False
        self.buffered = 0  # bytes "in the kernel", for get_write_buffer_size()

    # -- what the protocol calls --------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": self.peer, "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closing or self.eof_written, "write after close"
        self.written += data
        self.writes += 1

    def write_eof(self) -> None:
        self.eof_written = True

    def can_write_eof(self) -> bool:
        return True

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        # What is buffered "goes out" at once here; then the protocol hears the end, a loop
        # turn later, as from a real transport.
        self._lose()

    def abort(self) -> None:
        self.aborted = True
        self._lose()

    def _lose(self) -> None:
        if not self.closing:
            self.closing = True
            self.loop.call_soon(self._connection_lost)

    def _connection_lost(self) -> None:
        self.lost = True
        self.protocol.connection_lost(None)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self.protocol = protocol  # an upgrade: later bytes and the end go to the new protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.protocol

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return self.buffered

    # -- what the test calls ------------------------------------------------------------------

    def take(self) -> bytes:
        data = bytes(self.written)
        self.written.clear()
        return data


class Harness:
    def __init__(self, app: Any, **config: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.state = ServerState(config=build_config(None, config), app=app, loop=self.loop)

    def connect(self, peer: tuple[str, int] = ("10.0.0.7", 50000)) -> tuple[Http1Connection, FakeTransport]:
        conn = Http1Connection(self.state)
        transport = FakeTransport(conn, self.loop, peer)
        conn.connection_made(transport)
        return conn, transport

    def feed(self, conn: asyncio.Protocol, data: bytes) -> None:
        self.receive(conn, data)
        self.settle()

    def receive(self, conn: asyncio.Protocol, data: bytes) -> None:
        """data_received(), called by the loop as a transport's read would be (an app's first
        step may run in it, see --eager-start); nothing else runs after it."""
        self.loop.call_soon(conn.data_received, data)
        self.loop.call_soon(self.loop.stop)
        self.loop.run_forever()

    def settle(self, turns: int = 50) -> None:
        """Run the loop until nothing is ready (bounded: a livelock fails the test)."""
        for _ in range(turns):
            self.loop.run_until_complete(asyncio.sleep(0))
            if not self.loop._ready:  # type: ignore[attr-defined]
                return
        raise AssertionError("the loop never settled")

    def close(self) -> None:
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        self.settle()
        self.loop.close()
