"""StatsSlot: one worker's latest snapshot in a shared mapping, read by the supervisor.

Like the heartbeat (steadyloop.observe.heartbeat), the supervisor creates the
slot before it forks and the child inherits the anonymous shared mapping: the
worker writes, the supervisor reads, and neither waits for the other.

The layout is a sequence lock around a JSON document:

    0   sequence  (uint64)  odd while the writer is in the middle of a write
    8   length    (uint64)  of the document
    16  document  (UTF-8 JSON, at most CAPACITY bytes)

The writer bumps the sequence to odd, writes, then bumps it to even. A reader
copies the document and checks that the sequence was the same even number
before and after; if not, it tries again a few times, then keeps what it read
last time. There is one writer per slot (the worker's publisher thread).
"""

from __future__ import annotations

import json
import mmap
import struct
from typing import Any

SIZE = 1 << 20  # bytes mapped per worker (pages are only touched as far as written)
_HEADER = struct.Struct("=QQ")
CAPACITY = SIZE - _HEADER.size
READ_TRIES = 5


class StatsSlot:
    """A worker's published snapshot: `publish` in the worker, `read` in the supervisor."""

    def __init__(self) -> None:
        # mmap(-1, n) is MAP_SHARED | MAP_ANONYMOUS on Unix: shared with children after fork().
        self._map: mmap.mmap | None = mmap.mmap(-1, SIZE)
        self._sequence = 0

    def publish(self, data: bytes) -> bool:
        """Write a JSON document; False if it does not fit (it is then not published)."""
        m = self._map
        if m is None or len(data) > CAPACITY:
            return False
        self._sequence += 1  # odd: a write is in progress
        _HEADER.pack_into(m, 0, self._sequence, 0)
        m[_HEADER.size : _HEADER.size + len(data)] = data
        self._sequence += 1
        _HEADER.pack_into(m, 0, self._sequence, len(data))
        return True

    def read(self) -> dict[str, Any] | None:
        """The latest complete snapshot, or None (nothing published yet, or a write that
        never finished: the worker died in the middle of one)."""
        m = self._map
        if m is None:
            return None
        for _ in range(READ_TRIES):
            before, length = _HEADER.unpack_from(m, 0)
            if before == 0 or before % 2:
                if before == 0:
                    return None
                continue
            data = m[_HEADER.size : _HEADER.size + min(length, CAPACITY)]
            after, _ = _HEADER.unpack_from(m, 0)
            if after == before:
                try:
                    value = json.loads(data)
                except ValueError:
                    return None
                return value if isinstance(value, dict) else None
        return None

    def close(self) -> None:
        """Release the mapping in this process (the other side keeps its own). Idempotent."""
        if self._map is not None:
            self._map.close()
            self._map = None
