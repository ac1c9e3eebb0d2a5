"""A response's HEADERS and DATA frames written straight into the engine's output buffer.

`H2Connection.send_headers` and `send_data` cost a third of a small request: per
frame a hyperframe object, a flag set, header validation flags (for checks we
turn off), logger calls and a generic serialisation. For the common case --
the connection open, the stream known to the engine -- these functions do what
the engine would, in the same order, and nothing else:

    the stream's state machine gets the same inputs (SEND_HEADERS / SEND_DATA,
    then SEND_END_STREAM), so it refuses what the engine would refuse and ends
    in the same state;
    the outbound flow-control windows (stream and connection) drop by the DATA
    length, as `send_data` does; callers check them first, as before;
    the frames are the bytes hyperframe would write: a 9-byte header (RFC 9113
    §4.1) and the payload, no padding, no priority; a header block larger than
    the peer's SETTINGS_MAX_FRAME_SIZE goes on in CONTINUATION frames (§6.10).

Anything else (connection not open, an unknown stream, informational
responses, trailers) returns False before changing anything, and the caller
uses the engine's own method. Relies on h2 4.x internals (`state_machine`,
`streams`, `_data_to_send`, `outbound_flow_control_window`); pinned in
pyproject.toml.
"""

from __future__ import annotations

import struct
from typing import Any

import h2.stream
from h2.connection import ConnectionState
from h2.exceptions import ProtocolError
from h2.stream import StreamInputs, StreamState

_OPEN = ConnectionState.SERVER_OPEN
_CLOSED = StreamState.CLOSED


def _by_state(input_: StreamInputs) -> dict[StreamState, Any]:
    """The engine's stream transitions for one input, by state. `StreamState` is an IntEnum
    (hashed in C); the engine's own lookup hashes a `StreamInputs` member, a Python call."""
    return {state: entry for (state, kind), entry in h2.stream._transitions.items() if kind is input_}


_SEND_HEADERS = (StreamInputs.SEND_HEADERS, _by_state(StreamInputs.SEND_HEADERS))
_SEND_DATA = (StreamInputs.SEND_DATA, _by_state(StreamInputs.SEND_DATA))
_SEND_END_STREAM = (StreamInputs.SEND_END_STREAM, _by_state(StreamInputs.SEND_END_STREAM))


def _step(machine: Any, step: tuple[StreamInputs, dict[StreamState, Any]]) -> None:
    """`machine.process_input(input_)`: the same transition, side effects and errors."""
    previous = machine.state
    entry = step[1].get(previous)
    if entry is None:
        machine.process_input(step[0])  # not a transition: the engine's refusal (raises)
        return
    func, machine.state = entry
    if func is not None:
        try:
            func(machine, previous)
        except ProtocolError:
            machine.state = _CLOSED
            raise
        except AssertionError as err:  # as the engine does
            machine.state = _CLOSED
            raise ProtocolError(err) from err


_FRAME_HEAD = struct.Struct(">BHBBL")  # length (24 bits), type, flags, stream id
_DATA = 0x0
_HEADERS = 0x1
_CONTINUATION = 0x9
_END_STREAM = 0x1
_END_HEADERS = 0x4


def _head(length: int, kind: int, flags: int, sid: int) -> bytes:
    return _FRAME_HEAD.pack(length >> 16, length & 0xFFFF, kind, flags, sid)


def send_headers(engine: Any, sid: int, headers: list[tuple[bytes, bytes]], end: bool) -> bool:
    """A final response head (status 200 or more) on stream `sid`; False: not done, use
    `engine.send_headers`."""
    if engine.state_machine.state is not _OPEN:
        return False
    stream = engine.streams.get(sid)
    if stream is None or stream.state_machine.headers_sent:
        return False  # headers_sent: trailers, whose rules the engine checks
    engine._data_to_send += _headers(engine, stream, sid, headers, end)
    return True


def send_response(engine: Any, sid: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
    """A whole response: its head (status 200 or more) and `body` (not empty) in one DATA
    frame with END_STREAM. False, having changed nothing: the body does not fit the
    windows or one frame, or the case is not ours; the caller goes the long way."""
    if engine.state_machine.state is not _OPEN:
        return False
    stream = engine.streams.get(sid)
    if stream is None or stream.state_machine.headers_sent:
        return False
    size = len(body)
    if (
        size > engine.outbound_flow_control_window
        or size > stream.outbound_flow_control_window
        or size > engine.max_outbound_frame_size
    ):
        return False
    block = _headers(engine, stream, sid, headers, False)
    machine = stream.state_machine
    _step(machine, _SEND_DATA)
    _step(machine, _SEND_END_STREAM)
    stream.outbound_flow_control_window -= size
    engine.outbound_flow_control_window -= size
    engine._data_to_send += block + _head(size, _DATA, _END_STREAM, sid) + body
    return True


def _headers(engine: Any, stream: Any, sid: int, headers: list[tuple[bytes, bytes]], end: bool) -> bytes:
    """The HEADERS (and CONTINUATION) frames, the stream's state moved as the engine does."""
    machine = stream.state_machine
    # The engine moves the stream's state before it encodes (encoding may change the
    # compression context); so do we. A refused input raises here as it would there.
    _step(machine, _SEND_HEADERS)
    block: bytes = engine.encoder.encode(headers)
    flags = _END_STREAM if end else 0
    if end:
        _step(machine, _SEND_END_STREAM)
    stream.request_method = None  # what the engine sets from a response head (no :method)
    size = len(block)
    limit = engine.max_outbound_frame_size
    if size <= limit:
        return _head(size, _HEADERS, flags | _END_HEADERS, sid) + block
    out = bytearray(_head(limit, _HEADERS, flags, sid))
    out += block[:limit]
    start = limit
    while start < size:
        part = block[start : start + limit]
        start += len(part)
        out += _head(len(part), _CONTINUATION, _END_HEADERS if start >= size else 0, sid)
        out += part
    return bytes(out)


def send_data(engine: Any, sid: int, data: bytes | memoryview, end: bool) -> bool:
    """One DATA frame; the caller has checked it fits the windows and the peer's frame
    size. False: not done, use `engine.send_data`."""
    if engine.state_machine.state is not _OPEN:
        return False
    stream = engine.streams.get(sid)
    if stream is None:
        return False
    machine = stream.state_machine
    _step(machine, _SEND_DATA)
    if end:
        _step(machine, _SEND_END_STREAM)
    size = len(data)
    stream.outbound_flow_control_window -= size
    engine.outbound_flow_control_window -= size
    # On the attribute, not a local: correct whether the buffer is a bytearray or bytes.
    engine._data_to_send += _head(size, _DATA, _END_STREAM if end else 0, sid) + data
    return True
