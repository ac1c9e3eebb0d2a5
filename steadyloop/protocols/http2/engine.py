"""The h2 engine as steadyloop uses it: `H2Connection` with a cheaper open-stream count
and no text made of each frame received.

Each new stream a client opens makes the engine count the open streams against
SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 §5.1.2), walking every stream it
holds and moving the closed ones to its closed-stream memory. The engine's
walk reads two properties per stream (`open`, `closed`); this one reads the
state once. Same count, same streams moved, same `closed_by` remembered. A
subclass for our connections only: the h2 module itself is left as it is.

For every frame received the engine builds `repr(frame)` (flags, priority fields and a
hex dump of the payload) as an argument to its trace logger, which does nothing unless
a logger is configured -- and the text is built either way, about 1.5 us a frame. The
frames a request costs (HEADERS, DATA, WINDOW_UPDATE) reach the engine here as
subclasses of hyperframe's classes whose repr is just the kind and the stream; the
engine's dispatch table maps them to its own handlers, and every other check
(`isinstance`, fields, flags) sees the same frame.

Relies on h2 4.x internals (`streams`, `_closed_streams`, `_receive_frame`,
`_frame_dispatch_table`); pinned in pyproject.toml.
"""

from __future__ import annotations

from typing import Any

import h2.connection
from h2.stream import StreamState
from hyperframe.frame import DataFrame, HeadersFrame, WindowUpdateFrame

_CLOSED = StreamState.CLOSED
# "open" for the count: OPEN or either half-closed state (not reserved) -- RFC 9113 §5.1.2.
# Indexed by the state (an IntEnum): hashing an enum member is a Python-level call.
_COUNTED = tuple(
    state in (StreamState.OPEN, StreamState.HALF_CLOSED_LOCAL, StreamState.HALF_CLOSED_REMOTE)
    for state in sorted(StreamState)
)
assert all(int(state) == index for index, state in enumerate(sorted(StreamState)))


def _short_repr(frame: Any) -> str:
    return f"{type(frame).__bases__[0].__name__}(stream_id={frame.stream_id})"


class _Headers(HeadersFrame):
    __slots__ = ()
    __repr__ = _short_repr


class _Data(DataFrame):
    __slots__ = ()
    __repr__ = _short_repr


class _WindowUpdate(WindowUpdateFrame):
    __slots__ = ()
    __repr__ = _short_repr


_SHORT: dict[type, type] = {HeadersFrame: _Headers, DataFrame: _Data, WindowUpdateFrame: _WindowUpdate}


class Engine(h2.connection.H2Connection):
    def __init__(self, config: Any) -> None:
        super().__init__(config)
        table = self._frame_dispatch_table
        for kind, short in _SHORT.items():
            table[short] = table[kind]

    def _receive_frame(self, frame: Any) -> Any:
        short = _SHORT.get(frame.__class__)
        if short is not None:
            frame.__class__ = short
        return super()._receive_frame(frame)

    def _open_streams(self, remainder: int) -> int:
        count = 0
        closed = []
        for sid, stream in self.streams.items():
            state = stream.state_machine.state
            if state is _CLOSED:
                closed.append(sid)
            elif sid % 2 == remainder and _COUNTED[state]:
                count += 1
        if closed:
            streams = self.streams
            forgotten = self._closed_streams
            for sid in closed:
                forgotten[sid] = streams.pop(sid).state_machine.stream_closed_by
        return count
