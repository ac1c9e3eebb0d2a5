"""The h2 engine as steadyloop uses it: `H2Connection` with a cheaper open-stream count.

Each new stream a client opens makes the engine count the open streams against
SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 §5.1.2), walking every stream it
holds and moving the closed ones to its closed-stream memory. The engine's
walk reads two properties per stream (`open`, `closed`); this one reads the
state once. Same count, same streams moved, same `closed_by` remembered. A
subclass for our connections only: the h2 module itself is left as it is.
Relies on h2 4.x internals (`streams`, `_closed_streams`); pinned in pyproject.toml.
"""

from __future__ import annotations

import h2.connection
from h2.stream import StreamState

_CLOSED = StreamState.CLOSED
# "open" for the count: OPEN or either half-closed state (not reserved) -- RFC 9113 §5.1.2.
# Indexed by the state (an IntEnum): hashing an enum member is a Python-level call.
_COUNTED = tuple(
    state in (StreamState.OPEN, StreamState.HALF_CLOSED_LOCAL, StreamState.HALF_CLOSED_REMOTE)
    for state in sorted(StreamState)
)
assert all(int(state) == index for index, state in enumerate(sorted(StreamState)))


class Engine(h2.connection.H2Connection):
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
