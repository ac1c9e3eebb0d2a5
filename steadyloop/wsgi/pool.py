"""The WSGI bridge's pool of threads: at most `--threads` of them, started on demand.

Not a `ThreadPoolExecutor`, for two reasons. Its threads are daemon threads:
a WSGI view stuck forever (a database that never answers) must not keep the
process alive after graceful shutdown has given up on it, and the executor
joins its threads at interpreter exit. And jobs are `Ticket`s (`PoolJob`), so
the time each request spends queued for a thread lands in the pool's `PoolStats`.

Jobs must not raise: the bridge's job catches everything itself. A job that
does raise is logged here and the thread carries on.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from steadyloop.observe.threadpool import PoolStats, Ticket

logger = logging.getLogger("steadyloop.error")

Job = Callable[[], None]


class PoolJob(Ticket):
    """A job that is its own ticket: the bridge's request, one object where a callable and a
    ticket would be two. `since` is set when it is submitted."""

    __slots__ = ()

    def run(self) -> None:
        raise NotImplementedError


class _Call(PoolJob):
    """A plain callable as a pool job (`submit`)."""

    __slots__ = ("job",)

    def __init__(self, job: Job, label: object) -> None:
        super().__init__(label, 0.0)
        self.job = job

    def run(self) -> None:
        self.job()


class ThreadPool:
    """The WSGI bridge's bounded pool: its threads ("pool threads") grow on demand up to
    `size`. ("Worker" means a process in steadyloop; a thread of a pool is a pool thread.)"""

    def __init__(self, size: int, stats: PoolStats, name: str = "steadyloop-wsgi") -> None:
        self.size = size
        self.stats = stats
        self._name = name
        self._queue: queue.SimpleQueue[PoolJob | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, job: Job, label: object = None) -> None:
        """Queue `job`; `label` (the request) names it in long-wait reports. Never blocks."""
        self.submit_job(_Call(job, label))

    def submit_job(self, job: PoolJob) -> None:
        """Queue `job`, which names itself in long-wait reports (`what`). Never blocks."""
        if self._closed:
            raise RuntimeError("the WSGI thread pool is shut down")
        # The stats count the pool's running and queued jobs under their lock: a thread is
        # idle (or on its way back to the queue) unless there are at least as many jobs.
        demand = self.stats.enqueue_ticket(job)
        self._queue.put(job)
        if demand > len(self._threads):
            self._grow()

    def _grow(self) -> None:
        with self._lock:
            n = len(self._threads)
            if n >= self.size or self._closed:
                return
            thread = threading.Thread(target=self._work, name=f"{self._name}-{n + 1}", daemon=True)
            self._threads.append(thread)
        thread.start()

    def _work(self) -> None:
        stats = self.stats
        get = self._queue.get
        while True:
            job = get()
            if job is None:
                self._queue.put(None)  # pass the stop on to the next thread
                return
            stats.start(job)
            try:
                job.run()
            except BaseException:
                logger.exception("unexpected error in a WSGI pool thread")
            finally:
                stats.finish()
            del job  # drop the request before waiting for the next one

    def shutdown(self) -> None:
        """Stop the threads once queued jobs are done; returns at once (threads are daemons)."""
        self._closed = True
        self._queue.put(None)

    @property
    def threads(self) -> int:
        return len(self._threads)
