"""Wiring a worker's ProcessStats to what the server knows: connections, tasks, the hook.

The metrics publisher calls these from its own thread. They read the loop's
state without asking the loop: `list(set)` copies the connection set in one C
call under the GIL, and a connection's attributes are plain reads that may be
a moment stale, which a gauge can bear.
"""

from __future__ import annotations

from steadyloop.observe.logsetup import LogPipeline
from steadyloop.observe.metrics.process import ProcessStats
from steadyloop.observe.watchdog import Watchdog
from steadyloop.protocols.shared import ServerState


def attach(
    stats: ProcessStats,
    state: ServerState,
    watchdog: Watchdog | None,
    log: LogPipeline | None,
    *,
    count_requests: bool,
) -> None:
    stats.watchdog = watchdog
    stats.log = log
    stats.connections = lambda: connection_states(state)
    stats.tasks = lambda: state.tasks
    if count_requests:  # --metrics: the request path's hook (Http1Connection.response_complete)
        state.metrics = stats.requests


def connection_states(state: ServerState) -> dict[str, int]:
    """Open connections by state: active (a request in flight), idle (keep-alive), closing."""
    active = idle = closing = 0
    for conn in list(state.connections):
        if conn.closing:
            closing += 1
        elif conn.is_idle():
            idle += 1
        else:
            active += 1
    return {"active": active, "idle": idle, "closing": closing}
