"""The supervisor's decisions, without processes: which workers to start, retire, replace.

`PaperSupervisor` is the real `Supervisor` with forking and signalling replaced
by bookkeeping: `_spawn` makes a worker record, and signals sent to workers are
written down. Everything else (reconcile, status messages, exits, reloads,
back-off) is the production code.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from steadyloop.config import Config, WorkerOptions
from steadyloop.observe.heartbeat import Heartbeat
from steadyloop.supervisor.arbiter import BACKOFF_FIRST, Supervisor
from steadyloop.supervisor.process import Phase, Worker
from steadyloop.supervisor.worker import READY, RECYCLING

EXITED_1 = 1 << 8  # waitpid status: exited with code 1
EXITED_0 = 0


class PaperWorker(Worker):
    def __init__(self, pid: int, generation: int, started_at: float) -> None:
        read_fd, self.write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        super().__init__(pid, generation, read_fd, Heartbeat(), started_at)
        self.signals: list[signal.Signals] = []

    def signal(self, sig: signal.Signals) -> None:
        self.signals.append(sig)

    def say(self, kind: bytes, text: str = "") -> None:
        os.write(self.write_fd, kind + (b" " + text.encode() if text else b"") + b"\n")


class PaperSupervisor(Supervisor):
    def __init__(self, workers: int = 2) -> None:
        config = Config(app="tests.apps.basic:echo", worker=WorkerOptions(workers=workers))
        super().__init__(config, sockets=None)
        self.next_pid = 1000
        self.clock = 100.0
        self.all: list[PaperWorker] = []

    def _spawn(self) -> Worker:
        self.next_pid += 1
        self.clock += 0.001
        w = PaperWorker(self.next_pid, self.generation, self.clock)
        self.workers[w.pid] = w
        self.all.append(w)
        return w

    # -- the test's view -----------------------------------------------------------------------

    def start(self) -> None:
        self._reconcile(self.clock)

    def ready(self, w: PaperWorker) -> None:
        w.say(READY)
        self._on_status(w)

    def exit(self, w: PaperWorker, status: int) -> None:
        self._close_status(w)
        w.heartbeat.close()
        del self.workers[w.pid]
        self._on_exit(w, status)

    def phases(self) -> list[tuple[int, int, str]]:
        return sorted((w.pid, w.generation, w.phase.value) for w in self.workers.values())

    def close(self) -> None:
        for w in self.all:
            os.close(w.write_fd)
            self._close_status(w)
            w.heartbeat.close()


@pytest.fixture
def sup() -> Iterator[PaperSupervisor]:
    s = PaperSupervisor(workers=2)
    yield s
    s.close()


def test_it_starts_as_many_workers_as_wanted(sup: PaperSupervisor) -> None:
    sup.start()
    assert sup.phases() == [(1001, 0, "booting"), (1002, 0, "booting")]


def test_a_worker_that_dies_while_serving_is_replaced(sup: PaperSupervisor) -> None:
    sup.start()
    first, second = sup.all
    sup.ready(first)
    sup.ready(second)
    sup.exit(first, EXITED_1)
    assert [w.pid for w in sup.workers.values()] == [1002, 1003]


def test_a_reload_retires_one_old_worker_for_each_new_one_ready(sup: PaperSupervisor) -> None:
    sup.start()
    for w in sup.all:
        sup.ready(w)
    sup.reload(sup.clock)
    assert sup.phases() == [
        (1001, 0, "ready"),
        (1002, 0, "ready"),
        (1003, 1, "booting"),
        (1004, 1, "booting"),
    ]
    sup.ready(sup.all[2])
    # One new worker serves: exactly one old one goes, the oldest.
    assert sup.all[0].signals == [signal.SIGTERM] and sup.all[1].signals == []
    sup.ready(sup.all[3])
    assert sup.all[1].signals == [signal.SIGTERM]


def test_a_reload_whose_workers_fail_to_boot_is_abandoned_and_the_old_ones_stay(
    sup: PaperSupervisor,
) -> None:
    sup.start()
    for w in sup.all:
        sup.ready(w)
    sup.reload(sup.clock)
    new = sup.all[2]
    sup.exit(new, EXITED_1)
    assert all(w.signals == [] for w in sup.all[:2])  # nobody told the old workers to stop
    assert {w.generation for w in sup.workers.values() if w.phase is Phase.READY} == {1}


def test_a_recycling_worker_gets_its_replacement_before_it_leaves(sup: PaperSupervisor) -> None:
    sup.start()
    for w in sup.all:
        sup.ready(w)
    sup.all[0].say(RECYCLING)
    sup._on_status(sup.all[0])
    assert sup.phases() == [(1001, 0, "recycling"), (1002, 0, "ready"), (1003, 0, "booting")]
    sup.exit(sup.all[0], EXITED_0)
    assert len(sup.workers) == 2  # an expected exit: no second replacement


def test_fewer_workers_wanted_stops_booting_ones_before_serving_ones(sup: PaperSupervisor) -> None:
    sup.start()
    sup.ready(sup.all[0])
    sup.resize(1, sup.clock)
    assert sup.all[1].signals == [signal.SIGTERM] and sup.all[0].signals == []
    sup.resize(0, sup.clock)
    assert sup.target == 1  # never fewer than one


def test_when_no_worker_ever_boots_the_supervisor_gives_up_with_the_workers_error(
    sup: PaperSupervisor,
) -> None:
    sup.start()
    for w in list(sup.all):
        w.say(b"E", "could not import module 'nope'")
        sup._on_status(w)
        sup.exit(w, EXITED_1)
    assert sup.gave_up == "could not import module 'nope'"
    assert sup.stopping and sup.exit_code == 1
    assert len(sup.all) == 2  # no respawn storm


def test_boot_failures_after_a_success_back_off_doubling(sup: PaperSupervisor) -> None:
    sup.start()
    for w in sup.all:
        sup.ready(w)
    sup.exit(sup.all[0], EXITED_1)  # crashed while serving: replaced at once
    delays = []
    for _ in range(3):
        booting = sup.all[-1]
        exited_at = time.monotonic()
        sup.exit(booting, EXITED_1)  # the replacement fails to boot
        delays.append(round(sup.respawn_at - exited_at, 1))
        spawned = len(sup.all)
        sup._on_time(sup.respawn_at - 0.01)
        assert len(sup.all) == spawned  # not before the back-off is over
        sup._on_time(sup.respawn_at)
        assert len(sup.all) == spawned + 1
    assert delays == [BACKOFF_FIRST, BACKOFF_FIRST * 2, BACKOFF_FIRST * 4]
