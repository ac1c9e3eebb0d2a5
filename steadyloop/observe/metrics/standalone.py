"""One process without a supervisor: the metrics listener on a thread of its own.

The request loop never serves a scrape: this thread has its own selector and
reads the process's ProcessStats directly (there is no shared slot to read
when there is nobody to share it with). It is the only worker: label "0".
"""

from __future__ import annotations

import selectors
import socket
import threading
import time

from steadyloop.observe.metrics.exposition import ServerView, WorkerView
from steadyloop.observe.metrics.listener import MetricsListener
from steadyloop.observe.metrics.process import ProcessStats
from steadyloop.observe.metrics.routes import make_handler

WAKE_INTERVAL = 1.0  # seconds: the longest the thread sleeps before looking at its deadlines


class StandaloneListener:
    def __init__(self, sock: socket.socket, stats: ProcessStats) -> None:
        self.stats = stats
        self.listener = MetricsListener(sock, make_handler(self.view))
        self._selector = selectors.DefaultSelector()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()  # stop() wakes the select() at once

    def view(self) -> ServerView:
        return ServerView([WorkerView("0", self.stats.snapshot())], ready_workers=1)

    def start(self) -> None:
        self.listener.register(self._selector)
        self._selector.register(self._wake_r, selectors.EVENT_READ, lambda: None)
        self._thread = threading.Thread(target=self._run, name="steadyloop-metrics-listener", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket. Idempotent."""
        if self._thread is None:
            return
        self._stopping.set()
        self._wake_w.send(b"x")
        self._thread.join()
        self._thread = None
        self.listener.close()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            deadline = self.listener.next_deadline()
            now = time.monotonic()
            timeout = WAKE_INTERVAL if deadline is None else min(WAKE_INTERVAL, max(0.0, deadline - now))
            for key, _ in self._selector.select(timeout):
                key.data()
            self.listener.on_time(time.monotonic())
