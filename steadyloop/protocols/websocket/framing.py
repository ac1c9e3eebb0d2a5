"""The common frame, by hand: frame boundaries, one small unfragmented data frame in, any data
frame out. Pure functions, no state.

The engine (websockets' sans-I/O Protocol) handles every frame correctly, but
costs about 5 us per message in Python generators; a chat or echo message is
almost always one small, complete, unfragmented text or binary frame. For
those, and only while no extension is in use, the connection reads and writes
the frame itself; everything else (control frames, fragments, larger frames,
reserved bits, unmasked frames, anything malformed) goes to the engine, which
is fed whole frames only, so it is always between frames when the fast path
runs (RFC 6455 §5.2 gives every frame's length in its first 2-14 bytes).
"""

from __future__ import annotations

import struct

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - the C extension is missing on this platform
    from websockets.utils import apply_mask

__all__ = ["FAST_BINARY", "FAST_TEXT", "apply_mask", "frame_size", "server_frame"]

# First byte of a complete (FIN) text / binary frame with no reserved bits set.
FAST_TEXT = 0x81
FAST_BINARY = 0x82
_MEDIUM = struct.Struct("!BBH")
_LARGE = struct.Struct("!BBQ")


def frame_size(data: bytes, pos: int) -> int:
    """The whole size (head + payload) of the frame at data[pos:], or -1 when its head is
    not all here yet -- RFC 6455 §5.2: a 7-bit length, or 126 + 16 bits, or 127 + 64 bits,
    then a 4-byte masking key when the MASK bit is set."""
    have = len(data) - pos
    if have < 2:
        return -1
    second = data[pos + 1]
    length = second & 0x7F
    head = 2
    if length == 126:
        if have < 4:
            return -1
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        head = 4
    elif length == 127:
        if have < 10:
            return -1
        length = int.from_bytes(data[pos + 2 : pos + 10], "big")
        head = 10
    if second & 0x80:
        head += 4
    return head + length


def server_frame(first: int, payload: bytes) -> bytes:
    """A complete unmasked frame (servers never mask -- RFC 6455 §5.1) for `payload`."""
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 65536:
        return _MEDIUM.pack(first, 126, size) + payload
    return _LARGE.pack(first, 127, size) + payload
