"""The supervisor: keep N workers serving, replace the dead, recycle, reload, stop.

One thread, one `select()`. Everything the supervisor reacts to is a file
descriptor or a deadline:

    signal pipe     TERM/INT stop, HUP reload, TTIN/TTOU resize, CHLD a child exited
    status pipes    one per worker: ready / recycling / boot error (see worker.py)
    watcher pipe    --reload: files changed
    metrics port    --metrics: scrapes and status polls, answered from the workers'
                    shared stats slots (see metrics_hub.py); never a worker's loop
    deadlines       SIGKILL due for a worker that does not stop; the earliest moment
                    a worker's heartbeat can be older than --worker-timeout; the end
                    of a boot-failure back-off; a metrics client's request time-out

so it sleeps exactly until the next thing can happen, never in a polling loop.

Generations make reloads safe: HUP (or a file change) bumps the generation;
new workers boot while the old ones serve, and each new worker that reports
ready retires one old worker, so capacity never dips and the listening
socket is never without an acceptor. If a new worker fails to boot, the
reload is abandoned and the old workers stay.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import socket
import time
from typing import Protocol

from steadyloop.config import Config
from steadyloop.observe.heartbeat import Heartbeat
from steadyloop.observe.metrics.shm import StatsSlot
from steadyloop.observe.watchdog import DUMP_SIGNAL
from steadyloop.observe.words import counted
from steadyloop.sdnotify import Notifier
from steadyloop.supervisor.metrics_hub import MetricsHub, restart_reason
from steadyloop.supervisor.process import Phase, Worker, describe_status, fork_worker
from steadyloop.supervisor.signals import SignalPipe
from steadyloop.supervisor.worker import FAILED, READY, RECYCLING, WorkerLink, run_worker

logger = logging.getLogger("steadyloop.error")

HANDLED = tuple(
    s
    for s in (
        getattr(signal, name, None)
        for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGTTIN", "SIGTTOU", "SIGCHLD")
    )
    if s is not None
)
# Workers must not die or stop on signals meant for the supervisor: `kill -HUP -PGID`,
# or TTIN/TTOU, whose default action is to stop the process (job control).
IGNORED_IN_WORKER = tuple(
    s for s in (getattr(signal, n, None) for n in ("SIGHUP", "SIGTTIN", "SIGTTOU")) if s is not None
)

DUMP_GRACE = 0.5  # seconds between "dump your stacks" and SIGKILL for a stuck worker
KILL_MARGIN = 5.0  # beyond graceful shutdown + log drain, before a stopping worker is killed
BACKOFF_FIRST = 0.5  # seconds before respawning after the first boot failure; doubles
BACKOFF_MAX = 30.0


class ChangeSource(Protocol):
    """What the supervisor needs of a file watcher (--reload)."""

    pid: int

    def fileno(self) -> int: ...
    def read(self) -> list[str]: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...


class Supervisor:
    def __init__(
        self,
        config: Config,
        sockets: list[socket.socket] | None,
        watcher: ChangeSource | None = None,
        metrics_socket: socket.socket | None = None,
    ) -> None:
        self.config = config
        self.sockets = sockets  # None with --reuse-port: each worker binds its own
        self.watcher = watcher
        self.target = config.worker.workers
        self.generation = 0
        self.workers: dict[int, Worker] = {}
        self.stopping = False
        self.forced = False
        self.exit_code = 0
        self.ever_ready = False
        self.boot_failures = 0  # in a row; reset by any worker reaching ready
        self.respawn_at = 0.0  # boot-failure back-off: no spawning before this
        self.gave_up: str | None = None  # no worker ever booted: the reason we exit
        self.waiting_for_change = False  # --reload after a failed boot: until the next edit
        timeouts = config.timeouts
        self.stop_grace: float | None = (
            None
            if timeouts.graceful_shutdown is None
            else timeouts.graceful_shutdown + config.log.drain_timeout + KILL_MARGIN
        )
        self._signals: SignalPipe | None = None
        self._selector: selectors.BaseSelector | None = None
        self._lifeline: tuple[int, int] | None = None
        self.notifier: Notifier | None = None  # systemd's NOTIFY_SOCKET (steadyloop/sdnotify.py)
        self._next_ping = 0.0
        # --metrics: the listener runs in this select() loop; workers publish to shared slots.
        self.metrics: MetricsHub | None = None
        if metrics_socket is not None:
            self.metrics = MetricsHub(
                metrics_socket, lambda: sum(w.phase is Phase.READY for w in self.workers.values())
            )

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> int:
        """Supervise until stopped; returns the exit code for the process."""
        self._signals = SignalPipe(HANDLED)
        self._lifeline = os.pipe()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._signals.fileno(), selectors.EVENT_READ, self._on_signals)
        if self.watcher is not None:
            self._selector.register(self.watcher.fileno(), selectors.EVENT_READ, self._on_changes)
        if self.metrics is not None:
            self.metrics.listener.register(self._selector)
        try:
            self._reconcile(time.monotonic())
            while self.workers or not self.stopping:
                timeout = self._next_deadline(time.monotonic())
                for key, _ in self._selector.select(timeout):
                    key.data()
                self._reap()
                self._on_time(time.monotonic())
            self._stop_watcher()
            if self.gave_up is not None:
                logger.error("no worker could start: %s", self.gave_up)
            else:
                logger.info("supervisor %d: all workers stopped", os.getpid())
            return self.exit_code
        finally:
            self._cleanup()

    def _next_deadline(self, now: float) -> float | None:
        deadlines: list[float] = [w.kill_at for w in self.workers.values() if w.kill_at is not None]
        timeout = self.config.worker.worker_timeout
        if timeout is not None:
            for w in self.workers.values():
                if w.phase is Phase.READY and w.heartbeat.last():
                    deadlines.append(w.heartbeat.last() + timeout)
        if self._short() and self.respawn_at > now:
            deadlines.append(self.respawn_at)
        if self.ever_ready and self.notifier is not None and self.notifier.watchdog_interval is not None:
            deadlines.append(self._next_ping)
        if self.metrics is not None and (due := self.metrics.listener.next_deadline()) is not None:
            deadlines.append(due)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - now)

    def _on_time(self, now: float) -> None:
        for w in list(self.workers.values()):
            if w.kill_at is not None and now >= w.kill_at:
                if w.phase is Phase.KILLING:
                    logger.error("worker %d: killing it (SIGKILL) after the stack dump", w.pid)
                else:
                    logger.error("worker %d did not stop in time: killing it (SIGKILL)", w.pid)
                w.kill_at = None
                w.signal(signal.SIGKILL)
        timeout = self.config.worker.worker_timeout
        if timeout is not None:
            for w in list(self.workers.values()):
                age = w.heartbeat.age(now) if w.phase is Phase.READY else None
                if age is not None and age >= timeout:
                    self._dump_and_kill(w, age, now)
        if self._short() and now >= self.respawn_at:
            self._reconcile(now)
        if self.ever_ready and self.notifier is not None and now >= self._next_ping:
            self._ping_systemd(now, self.notifier)

    def _ping_systemd(self, now: float, notifier: Notifier) -> None:
        """WATCHDOG=1, but only while every ready worker's loop stamps its heartbeat."""
        if notifier.watchdog_interval is None or notifier.watchdog_timeout is None:
            return
        ages = [w.heartbeat.age(now) for w in self.workers.values() if w.phase is Phase.READY]
        if ages and all(age is None or age < notifier.watchdog_timeout for age in ages):
            notifier.watchdog()
        self._next_ping = now + notifier.watchdog_interval
        if self.metrics is not None:
            self.metrics.listener.on_time(now)

    # -- what happens ------------------------------------------------------------------------

    def _on_signals(self) -> None:
        assert self._signals is not None
        for sig in self._signals.read():
            now = time.monotonic()
            if sig == signal.SIGCHLD:
                continue  # reaped after every wake-up
            if sig in (signal.SIGTERM, signal.SIGINT):
                if not self.stopping:
                    logger.info("supervisor received %s: stopping all workers gracefully", sig.name)
                    self._begin_shutdown(now)
                elif sig == signal.SIGINT and not self.forced:
                    logger.warning("second SIGINT: forcing the workers to stop")
                    self.forced = True
                    for w in self.workers.values():
                        w.signal(signal.SIGINT)
                continue
            if self.stopping:
                continue
            if sig == signal.SIGHUP:
                logger.info(
                    "received SIGHUP: starting %s; the old ones stop once the new are ready",
                    counted(self.target, "new worker"),
                )
                self.reload(now)
            elif sig == getattr(signal, "SIGTTIN", None):
                self.resize(self.target + 1, now)
                logger.info("received SIGTTIN: %s wanted", counted(self.target, "worker"))
            elif sig == getattr(signal, "SIGTTOU", None):
                self.resize(self.target - 1, now)
                logger.info("received SIGTTOU: %s wanted", counted(self.target, "worker"))

    def reload(self, now: float) -> None:
        """A new generation: new workers boot, each ready one retires an old one."""
        self.generation += 1
        self.waiting_for_change = False
        self.boot_failures = 0
        self.respawn_at = 0.0
        self._reconcile(now)

    def resize(self, target: int, now: float) -> None:
        """TTIN/TTOU: at least one worker is always wanted."""
        self.target = max(1, target)
        self._reconcile(now)

    def _on_changes(self) -> None:
        assert self.watcher is not None
        changed = self.watcher.read()
        if not changed or self.stopping:
            return
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        logger.info("detected changes in %s: reloading", shown)
        self.reload(time.monotonic())

    def _on_status(self, w: Worker) -> None:
        try:
            data = os.read(w.status_fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_status(w)
            return
        now = time.monotonic()
        for kind, text in w.messages(data):
            if kind == READY and w.phase is Phase.BOOTING:
                w.phase = Phase.READY
                self.boot_failures = 0
                if self.gave_up is not None:  # some first workers failed, this one made it
                    self.gave_up = None
                    self.exit_code = 0
                logger.info("worker %d is ready", w.pid)
                if not self.ever_ready and self.notifier is not None:
                    self.notifier.ready(f"worker {w.pid} is ready")
                self.ever_ready = True
                self._reconcile(now)
            elif kind == RECYCLING and w.serving:
                w.phase = Phase.RECYCLING
                w.expected_exit = True
                w.kill_at = None if self.stop_grace is None else now + self.stop_grace
                logger.info("worker %d is recycling: starting its replacement", w.pid)
                self._reconcile(now)
            elif kind == FAILED:
                w.boot_error = text

    def _reap(self) -> None:
        for w in list(self.workers.values()):
            try:
                pid, status = os.waitpid(w.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = w.pid, 255 << 8
            if pid == 0:
                continue
            self._on_status(w)  # whatever it said last, before it died
            self._close_status(w)
            w.heartbeat.close()
            del self.workers[w.pid]
            if self.metrics is not None:
                self.metrics.worker_exited(w.pid, restart_reason(w, self.generation, self.stopping))
            self._on_exit(w, status)
        watcher = self.watcher
        if watcher is not None and watcher.pid:
            try:
                pid, status = os.waitpid(watcher.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = watcher.pid, 0
            if pid:
                if not self.stopping:
                    logger.error("the file watcher %s: --reload no longer works", describe_status(status))
                watcher.pid = 0

    def _on_exit(self, w: Worker, status: int) -> None:
        how = describe_status(status)
        now = time.monotonic()
        if w.expected_exit:
            logger.info("worker %d %s", w.pid, how)
        elif w.phase is Phase.KILLING:
            logger.error("worker %d %s (replaced already)", w.pid, how)
        elif w.phase is Phase.BOOTING:
            self._on_boot_failure(
                w, how, w.boot_error or f"the worker {how} before it was ready", status, now
            )
            return
        else:
            logger.error("worker %d %s: starting a replacement", w.pid, how)
        self._reconcile(now)

    def _on_boot_failure(self, w: Worker, how: str, message: str, status: int, now: float) -> None:
        # The worker logged its error itself; the message is repeated once, in the last line.
        logger.error("worker %d failed to boot (it %s)", w.pid, how)
        if self.stopping:
            return
        previous = [x for x in self.workers.values() if x.generation < w.generation and x.serving]
        if previous and w.generation == self.generation:
            logger.error(
                "reload abandoned (%s): %s serving the previous code",
                message,
                counted(len(previous), "worker") + (" keeps" if len(previous) == 1 else " keep"),
            )
            for x in previous:
                x.generation = self.generation
        if self.watcher is not None:
            self.waiting_for_change = True
            logger.error("waiting for a file change before starting the worker again")
        elif not self.ever_ready:
            # Nothing has ever booted: the app (or its config) is broken, and retrying
            # would only repeat the same error. Stop once the other boots end too.
            # (If another first worker still boots and makes it, it revokes this.)
            if self.gave_up is None:
                self.gave_up = message
                code = os.waitstatus_to_exitcode(status)
                self.exit_code = code if code > 0 else 1
            if not any(x.serving for x in self.workers.values()):
                self._begin_shutdown(now)
            return
        else:
            self.boot_failures += 1
            delay = min(BACKOFF_FIRST * 2 ** (self.boot_failures - 1), BACKOFF_MAX)
            self.respawn_at = now + delay
            logger.error(
                "%s in a row: next attempt in %.1f s", counted(self.boot_failures, "boot failure"), delay
            )
        self._reconcile(now)

    def _dump_and_kill(self, w: Worker, age: float, now: float) -> None:
        logger.error(
            "worker %d: its event loop has not run for %.1f s (--worker-timeout %g): "
            "dumping its stacks to stderr, then killing it",
            w.pid,
            age,
            self.config.worker.worker_timeout,
        )
        w.phase = Phase.KILLING
        w.expected_exit = False  # its exit is a failure: logged as such, and replaced
        if DUMP_SIGNAL is not None:
            w.signal(DUMP_SIGNAL)
            w.kill_at = now + DUMP_GRACE
        else:
            w.signal(signal.SIGKILL)
        self._reconcile(now)

    # -- keeping the numbers right --------------------------------------------------------------

    def _short(self) -> bool:
        """Fewer current-generation workers than wanted."""
        current = sum(1 for w in self.workers.values() if w.generation == self.generation and w.serving)
        return current < self.target

    def _reconcile(self, now: float) -> None:
        if self.stopping:
            return
        current = [w for w in self.workers.values() if w.generation == self.generation and w.serving]
        missing = self.target - len(current)
        blocked = self.waiting_for_change or self.gave_up is not None or now < self.respawn_at
        if missing > 0 and not blocked:
            for _ in range(missing):
                self._spawn()
        elif missing < 0:
            # Too many (TTOU, or an abandoned reload): stop booting ones first, then the oldest.
            extra = sorted(current, key=lambda w: (w.phase is Phase.READY, w.started_at))
            for w in extra[:-missing]:
                self._stop(w, now)
        # Retire older generations as the new one becomes ready, one for one.
        ready_now = sum(1 for w in current if w.phase is Phase.READY)
        old = sorted(
            (w for w in self.workers.values() if w.generation < self.generation and w.serving),
            key=lambda w: w.started_at,
        )
        for w in old[: max(0, len(old) + ready_now - self.target)]:
            self._stop(w, now)

    def _spawn(self) -> Worker:
        assert self._selector is not None and self._signals is not None and self._lifeline is not None
        lifeline_read = self._lifeline[0]
        inherited = self._private_fds()
        stats_slot = StatsSlot() if self.metrics is not None else None

        def child_main(status_fd: int, heartbeat: Heartbeat) -> int:
            link = WorkerLink(status_fd, lifeline_read, heartbeat, stats_slot)
            return run_worker(self.config, self.sockets, link)

        def reset_signals() -> None:
            assert self._selector is not None
            self._selector.close()  # closes our epoll fd in the child only
            SignalPipe.reset_in_child(HANDLED, IGNORED_IN_WORKER)

        w = fork_worker(self.generation, child_main, inherited, reset_signals)
        self.workers[w.pid] = w
        if self.metrics is not None and stats_slot is not None:
            self.metrics.attach(w.pid, stats_slot)
        self._selector.register(w.status_fd, selectors.EVENT_READ, lambda: self._on_status(w))
        logger.info("booting worker %d", w.pid)
        return w

    def _stop(self, w: Worker, now: float) -> None:
        if w.phase in (Phase.STOPPING, Phase.KILLING):
            return
        w.phase = Phase.STOPPING
        w.expected_exit = True
        w.kill_at = None if self.stop_grace is None else now + self.stop_grace
        w.signal(signal.SIGTERM)

    def _begin_shutdown(self, now: float) -> None:
        self.stopping = True
        if self.notifier is not None:
            self.notifier.stopping()
        # Our copy of the listening sockets goes now: once the workers have closed
        # theirs, new connections are refused at once instead of waiting in a
        # backlog nobody will accept from.
        for sock in self.sockets or ():
            sock.close()
        for w in list(self.workers.values()):
            if w.phase is Phase.RECYCLING:
                w.signal(signal.SIGTERM)
            else:
                self._stop(w, now)
        self._stop_watcher()

    # -- housekeeping -----------------------------------------------------------------------------

    def _private_fds(self) -> list[int]:
        """Descriptors a forked worker must not keep: they belong to the supervisor."""
        assert self._signals is not None and self._lifeline is not None
        fds = [*self._signals.fds(), self._lifeline[1]]
        fds.extend(w.status_fd for w in self.workers.values() if w.status_fd >= 0)
        if self.watcher is not None:
            fds.append(self.watcher.fileno())
        if self.metrics is not None:
            fds.extend(self.metrics.listener.fds())
        return fds

    def _close_status(self, w: Worker) -> None:
        if w.status_fd < 0:
            return
        if self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(w.status_fd)
        os.close(w.status_fd)
        w.status_fd = -1

    def _stop_watcher(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()

    def _cleanup(self) -> None:
        # Only reached with workers alive if the supervisor itself failed: don't orphan them.
        for w in self.workers.values():
            w.signal(signal.SIGKILL)
        for w in list(self.workers.values()):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(w.pid, 0)
            self._close_status(w)
            w.heartbeat.close()
        self.workers.clear()
        if self.watcher is not None:
            if self.watcher.pid:
                try:
                    os.kill(self.watcher.pid, signal.SIGKILL)
                    os.waitpid(self.watcher.pid, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass
            self.watcher.close()
        if self.metrics is not None:
            self.metrics.close()
        if self._selector is not None:
            self._selector.close()
        if self._signals is not None:
            self._signals.close()
        if self._lifeline is not None:
            os.close(self._lifeline[0])
            os.close(self._lifeline[1])
