"""--reload: a file-watching process that tells the supervisor which files changed.

The watcher runs in its own forked process, not in a thread of the supervisor:
watchfiles watches from a native thread, and a supervisor with a second thread
could no longer fork workers safely. The process writes one line per batch of
changes (the paths, NUL-separated) into a pipe the supervisor selects on, and
exits by itself when the supervisor goes away.

What is watched: every directory in --reload-dir (default: the current
directory), recursively; files matching `*.py` or a --reload-include glob, and
no --reload-exclude glob (plus editor droppings and tool directories such as
`.git`, `__pycache__`, `.venv`, `node_modules`). Globs match the file name or
the whole path.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import signal
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePath

logger = logging.getLogger("steadyloop.error")

WATCHING_TIMEOUT_MS = 100
DEFAULT_INCLUDES = ("*.py",)
DEFAULT_EXCLUDES = (".*", "*.py[cod]", "*.sw?", "*~", "#*#")
IGNORED_DIRS = frozenset(
    {
        "__pycache__",
        ".git",
        ".hg",
        ".svn",
        ".tox",
        ".venv",
        "venv",
        ".idea",
        "node_modules",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".hypothesis",
    }
)


@dataclass(frozen=True)
class ReloadFilter:
    """Which changed paths cause a reload."""

    includes: tuple[str, ...] = DEFAULT_INCLUDES
    excludes: tuple[str, ...] = DEFAULT_EXCLUDES

    @classmethod
    def from_options(cls, includes: Iterable[str], excludes: Iterable[str]) -> ReloadFilter:
        return cls(DEFAULT_INCLUDES + tuple(includes), DEFAULT_EXCLUDES + tuple(excludes))

    def wants(self, path: str) -> bool:
        parts = PurePath(path).parts
        if any(part in IGNORED_DIRS for part in parts[:-1]):
            return False
        name = parts[-1] if parts else path
        if any(fnmatch.fnmatch(name, g) or fnmatch.fnmatch(path, g) for g in self.excludes):
            return False
        return any(fnmatch.fnmatch(name, g) or fnmatch.fnmatch(path, g) for g in self.includes)

    def __call__(self, change: object, path: str) -> bool:  # the watchfiles filter signature
        return self.wants(path)


class _SupervisorGone:
    """watchfiles' stop_event: the watcher stops when its parent is no longer the supervisor."""

    def __init__(self, parent: int) -> None:
        self._parent = parent

    def is_set(self) -> bool:
        return os.getppid() != self._parent


class FileWatcher:
    """The supervisor's end of the watcher process (see `ChangeSource` in arbiter.py)."""

    def __init__(self, dirs: Iterable[str], flt: ReloadFilter, close_in_child: Iterable[int] = ()) -> None:
        self.dirs = [os.path.abspath(d) for d in dirs] or [os.getcwd()]
        for d in self.dirs:
            if not os.path.isdir(d):
                from steadyloop.config import ConfigError

                raise ConfigError(f"--reload-dir {d} is not a directory")
        self.filter = flt
        self.watching = False  # the watcher process reported its watches in place
        self._buffer = b""
        read_fd, write_fd = os.pipe()
        parent = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(read_fd)
                for fd in close_in_child:
                    with contextlib.suppress(OSError):
                        os.close(fd)
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is for the supervisor
                _watch(self.dirs, flt, write_fd, parent)
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        self.pid = pid
        self._fd = read_fd

    def fileno(self) -> int:
        return self._fd

    def read(self) -> list[str]:
        """Paths changed since the last read (deduplicated, in order); never blocks."""
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                break
            if not data:
                break
            self._buffer += data
        if b"\n" not in self._buffer:
            return []
        lines, _, self._buffer = self._buffer.rpartition(b"\n")
        seen: dict[str, None] = {}
        for line in lines.split(b"\n"):
            if not line and not self.watching:
                self.watching = True
                logger.info("watching %s for changes (--reload)", ", ".join(self.dirs))
            for path in line.split(b"\0"):
                if path:
                    seen[os.fsdecode(path)] = None
        return list(seen)

    def stop(self) -> None:
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _watch(dirs: list[str], flt: ReloadFilter, write_fd: int, parent: int) -> None:
    import watchfiles

    announced = False
    # yield_on_timeout: the first (empty) yield says the watches are in place, so
    # "watching ..." is logged only when an edit would really be seen. (watchfiles
    # wakes every `step` ms anyway to check stop_event: the timeout costs nothing.)
    for changes in watchfiles.watch(
        *dirs,
        watch_filter=flt,
        stop_event=_SupervisorGone(parent),
        raise_interrupt=False,
        yield_on_timeout=True,
        rust_timeout=WATCHING_TIMEOUT_MS,
    ):
        if changes:
            paths = sorted({_short(path) for _, path in changes})
            os.write(write_fd, b"\0".join(os.fsencode(p) for p in paths) + b"\n")
        elif not announced:
            os.write(write_fd, b"\n")  # an empty line: "watching now"
        announced = True  # after either, the watches are known to be in place


def _short(path: str) -> str:
    """Relative to the current directory when inside it, for a readable log line."""
    cwd = os.getcwd()
    return os.path.relpath(path, cwd) if path.startswith(cwd + os.sep) else path
