"""The supervisor's handle on one worker process, and the fork that makes it.

Why fork and not spawn: the supervisor never imports the app, so a forked
child imports it fresh (a HUP picks up new code, --reload works), and fork
hands the child the listening sockets and the heartbeat's shared page without
passing anything; a spawned interpreter would re-import steadyloop and its
dependencies for every worker and need the sockets passed by number. Forking
is safe here because the supervisor has one thread: its logging is
synchronous (no writer thread), it starts no thread pool and no watchdog,
and file watching for --reload runs in its own process. The log writer, the
watchdog and the thread pool all start inside the child, in `serve_process`.
"""

from __future__ import annotations

import contextlib
import enum
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from steadyloop.observe.heartbeat import Heartbeat


class Phase(enum.Enum):
    BOOTING = "booting"  # forked, not listening yet
    READY = "ready"  # serving
    RECYCLING = "recycling"  # draining by its own choice (--max-requests)
    STOPPING = "stopping"  # told to stop (SIGTERM): draining
    KILLING = "killing"  # stuck: stacks dumped, SIGKILL due


@dataclass(eq=False)
class Worker:
    pid: int
    generation: int  # bumped by every HUP / reload; older generations are retired
    status_fd: int  # read end of the status pipe
    heartbeat: Heartbeat
    started_at: float
    phase: Phase = Phase.BOOTING
    kill_at: float | None = None  # when SIGKILL is due (stopping too long, or stuck)
    boot_error: str | None = None
    expected_exit: bool = False  # we asked it to stop: its exit is not a failure
    buffer: bytearray = field(default_factory=bytearray)

    @property
    def serving(self) -> bool:
        """Counts toward the wanted number of workers."""
        return self.phase in (Phase.BOOTING, Phase.READY)

    def signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):  # exited already: the reaper will see it
            os.kill(self.pid, sig)

    def messages(self, data: bytes) -> list[tuple[bytes, str]]:
        """Split what arrived on the status pipe into (kind, text) lines."""
        self.buffer += data
        out: list[tuple[bytes, str]] = []
        while b"\n" in self.buffer:
            line, _, rest = bytes(self.buffer).partition(b"\n")
            self.buffer = bytearray(rest)
            kind, _, text = line.partition(b" ")
            out.append((kind, text.decode("utf-8", "replace")))
        return out


def fork_worker(
    generation: int,
    child_main: Callable[[int, Heartbeat], int],
    close_in_child: Iterable[int],
    reset_signals: Callable[[], None],
) -> Worker:
    """Fork; the child runs `child_main(status_write_fd, heartbeat)` and exits with its code."""
    heartbeat = Heartbeat()
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    # Signals stay blocked across the fork until the child has its own handlers: a TERM
    # sent to a child that has not reset them yet would run the supervisor's handler in the
    # child and be lost (the worker would boot and serve on, unasked). Pending, it is
    # delivered to the child's default handler instead, and to the parent after the fork.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    pid = os.fork()
    if pid != 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    if pid == 0:  # the child: never returns into the supervisor's stack
        code = 1
        try:
            reset_signals()
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            for fd in (read_fd, *close_in_child):
                with contextlib.suppress(OSError):
                    os.close(fd)
            code = child_main(write_fd, heartbeat)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    os.close(write_fd)
    os.set_blocking(read_fd, False)
    return Worker(pid, generation, read_fd, heartbeat, time.monotonic())


def describe_status(status: int) -> str:
    """A waitpid() status as words: "exited with code 1", "was killed by SIGKILL"."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"
