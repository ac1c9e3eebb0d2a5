"""The supervisor's side of metrics: one shared slot per worker, one listener for all.

Before forking a worker the supervisor takes a `StatsSlot` from the hub; the
worker's publisher writes its snapshot there and the hub reads it when a
scrape comes (never asking the worker anything). Each live worker holds a
label, "0", "1", ...: the smallest one no other live worker holds, so a
replacement takes over its predecessor's label and the label set stays small
across restarts and reloads. When a worker exits, its last snapshot's
counters are added to its label's retired totals: counters never go
backwards, whatever happens to the processes behind them.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from steadyloop.observe.metrics.exposition import RESTART_REASONS, ServerView, WorkerView
from steadyloop.observe.metrics.listener import MetricsListener
from steadyloop.observe.metrics.routes import make_handler
from steadyloop.observe.metrics.shm import StatsSlot
from steadyloop.observe.metrics.totals import add
from steadyloop.supervisor.process import Phase, Worker


def restart_reason(w: Worker, generation: int, stopping: bool) -> str | None:
    """Why `w` exited, as a restart reason; None if it is not replaced (shutdown, TTOU)."""
    if stopping:
        return None
    if w.phase is Phase.KILLING:
        return "stuck_loop"  # --worker-timeout: its loop stopped beating
    if w.phase is Phase.RECYCLING:
        return "max_requests"
    if w.expected_exit:
        return "reload" if w.generation < generation else None
    return "crashed"  # died unasked, booting or serving


class MetricsHub:
    def __init__(self, sock: socket.socket, ready_workers: Callable[[], int]) -> None:
        self.ready_workers = ready_workers
        self.restarts = dict.fromkeys(RESTART_REASONS, 0)
        self.listener = MetricsListener(sock, make_handler(self.view))
        self._slots: dict[int, tuple[str, StatsSlot]] = {}  # pid -> (label, slot)
        self._last: dict[int, dict[str, Any]] = {}  # pid -> the last snapshot read
        self._retired: dict[str, dict[str, Any]] = {}  # label -> counters of exited workers

    def attach(self, pid: int, slot: StatsSlot) -> None:
        """A worker was forked with `slot`: give it the smallest free label."""
        taken = {label for label, _ in self._slots.values()}
        label = next(str(i) for i in range(len(taken) + 1) if str(i) not in taken)
        self._slots[pid] = (label, slot)

    def worker_exited(self, pid: int, reason: str | None) -> None:
        entry = self._slots.pop(pid, None)
        last = self._last.pop(pid, None)
        if entry is None:
            return
        label, slot = entry
        final = slot.read() or last  # None only if it died before publishing anything
        slot.close()
        if final is not None:
            self._retired[label] = add(self._retired.get(label, {}), final["counters"])
        if reason is not None:
            self.restarts[reason] += 1

    def view(self) -> ServerView:
        live: dict[str, dict[str, Any]] = {}
        for pid, (label, slot) in self._slots.items():
            snapshot = slot.read() or self._last.get(pid)
            if snapshot is not None:
                self._last[pid] = snapshot
                live[label] = snapshot
        labels = sorted(set(live) | set(self._retired), key=int)
        workers = [WorkerView(label, live.get(label), self._retired.get(label, {})) for label in labels]
        return ServerView(workers, self.ready_workers(), dict(self.restarts))

    def close(self) -> None:
        self.listener.close()
        for _, slot in self._slots.values():
            slot.close()
        self._slots.clear()
