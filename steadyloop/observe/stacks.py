"""Stack samples of another thread: take them, merge them, say which frames are the app's.

A sample is a tuple of plain `(filename, lineno, function)` triples, outermost
first. Frames are turned into tuples at once so that a sample never keeps a
frame (and every local variable in it) alive.

"App frames" are the user's own code: not the standard library, not an
installed package (site-packages / dist-packages), not steadyloop itself, and
not the launcher script that started the process (`bin/steadyloop`,
`bin/gunicorn`: a console script in the interpreter's scripts directory).
"""

from __future__ import annotations

import collections
import contextlib
import os
import site
import sys
import sysconfig
from dataclasses import dataclass
from typing import Literal, NamedTuple

FrameKind = Literal["app", "stdlib", "library", "steadyloop", "launcher"]

# Enough for any real program; a runaway recursion is cut at the outer end
# (the innermost frames, where the block is, are the ones worth keeping).
MAX_DEPTH = 200


class FrameKey(NamedTuple):
    filename: str
    lineno: int
    function: str


Stack = tuple[FrameKey, ...]  # outermost first, innermost (where the thread is) last


def sample_thread(thread_id: int, max_depth: int = MAX_DEPTH) -> Stack | None:
    """The Python stack of thread `thread_id` right now, or None if it has no Python frame.

    Only Python frames are visible: a thread inside `time.sleep` or a C
    extension shows the Python frame that made the call.
    """
    frame = sys._current_frames().get(thread_id)
    frames: list[FrameKey] = []
    while frame is not None and len(frames) < max_depth:
        code = frame.f_code
        # co_qualname ("Class.method") exists from 3.11; 3.10 has only co_name.
        name: str = getattr(code, "co_qualname", code.co_name)
        frames.append(FrameKey(code.co_filename, frame.f_lineno or 0, name))
        frame = frame.f_back
    del frame
    if not frames:
        return None
    frames.reverse()
    return tuple(frames)


def _norm_dir(path: str) -> str:
    return os.path.join(os.path.normcase(os.path.realpath(path)), "")


class FrameClassifier:
    """Says what kind of code a file is, and how to show its name short.

    Results are cached per filename: a process has a bounded set of source
    files, and the watchdog asks about the same ones again and again.
    """

    def __init__(self, cwd: str | None = None) -> None:
        self._cwd = _norm_dir(cwd if cwd is not None else os.getcwd())
        self._package_root = _norm_dir(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
        self._steadyloop = _norm_dir(os.path.dirname(os.path.dirname(__file__)))
        self._site = sorted(_site_dirs(), key=len, reverse=True)  # longest (most specific) first
        self._stdlib = sorted(_stdlib_dirs(), key=len, reverse=True)
        self._scripts = _scripts_dirs()
        self._cache: dict[str, tuple[FrameKind, str]] = {}

    def kind(self, filename: str) -> FrameKind:
        return self._lookup(filename)[0]

    def is_app(self, filename: str) -> bool:
        return self._lookup(filename)[0] == "app"

    def display(self, filename: str) -> str:
        """`logging/__init__.py` for the stdlib, `starlette/routing.py` for a package,
        a path relative to the working directory for the app (absolute if outside it)."""
        return self._lookup(filename)[1]

    def describe(self, frame: FrameKey) -> str:
        """`file:line in function`."""
        return f"{self.display(frame.filename)}:{frame.lineno} in {frame.function}"

    def _lookup(self, filename: str) -> tuple[FrameKind, str]:
        hit = self._cache.get(filename)
        if hit is None:
            hit = self._classify(filename)
            self._cache[filename] = hit
        return hit

    def _classify(self, filename: str) -> tuple[FrameKind, str]:
        if filename.startswith("<"):
            # "<frozen importlib._bootstrap>" is the stdlib; "<string>", "<stdin>" or a
            # notebook cell is code the user wrote.
            return ("stdlib" if filename.startswith("<frozen ") else "app"), filename
        path = os.path.normcase(os.path.realpath(filename))
        if path.startswith(self._steadyloop):
            return "steadyloop", _rel(path, self._package_root)
        directory = _norm_dir(os.path.dirname(path))
        if directory in self._scripts:
            return "launcher", os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path))
        # Packages before the stdlib: site-packages often lives inside the stdlib directory.
        for root in self._site:
            if path.startswith(root):
                return "library", _rel(path, root)
        parts = path.split(os.sep)
        for marker in ("site-packages", "dist-packages"):
            if marker in parts:  # a site directory we were not told about (a vendored env)
                index = len(parts) - 1 - parts[::-1].index(marker)
                return "library", os.path.join(*parts[index + 1 :])
        for root in self._stdlib:
            if path.startswith(root):
                return "stdlib", _rel(path, root)
        if path.startswith(self._cwd):
            return "app", _rel(path, self._cwd)
        return "app", path


def _rel(path: str, root: str) -> str:
    return path[len(root) :] if path.startswith(root) else path


def _site_dirs() -> set[str]:
    dirs: set[str] = set()
    # Some embedded interpreters and old virtualenv site modules lack getsitepackages.
    with contextlib.suppress(AttributeError):
        dirs.update(site.getsitepackages())
    user = site.getusersitepackages()
    if isinstance(user, str):
        dirs.add(user)
    paths = sysconfig.get_paths()
    dirs.update(paths[key] for key in ("purelib", "platlib") if key in paths)
    return {_norm_dir(d) for d in dirs}


def _scripts_dirs() -> set[str]:
    """Where console scripts live: the scripts directory, and the interpreter's own
    (a virtualenv's bin/, not resolved through the python symlink)."""
    dirs = {os.path.dirname(os.path.abspath(sys.executable))}
    scripts = sysconfig.get_paths().get("scripts")
    if scripts:
        dirs.add(scripts)
    return {_norm_dir(d) for d in dirs}


def _stdlib_dirs() -> set[str]:
    paths = sysconfig.get_paths()
    dirs = {paths[key] for key in ("stdlib", "platstdlib") if key in paths}
    dirs.add(os.path.dirname(os.__file__))
    return {_norm_dir(d) for d in dirs}


@dataclass(frozen=True)
class Where:
    """Where a stack was stuck, in the words of a report."""

    app_frame: FrameKey | None  # the innermost app frame: the user's line that blocked
    entry: FrameKey | None  # the first non-app frame it called (e.g. logging's Logger.info)
    stuck_in: FrameKey | None  # the innermost frame if not the app's (e.g. StreamHandler.emit)


def locate(stack: Stack, classifier: FrameClassifier) -> Where:
    app_index = None
    for i in range(len(stack) - 1, -1, -1):
        if classifier.is_app(stack[i].filename):
            app_index = i
            break
    innermost = stack[-1] if stack else None
    if app_index is None:
        return Where(None, None, innermost)
    entry = stack[app_index + 1] if app_index + 1 < len(stack) else None
    stuck_in = innermost if innermost is not None and entry is not None else None
    return Where(stack[app_index], entry, stuck_in)


class StackCounts:
    """Identical samples merged into one stack with a count; the order of first sight is kept."""

    def __init__(self) -> None:
        self._counts: collections.Counter[Stack] = collections.Counter()
        self.samples = 0

    def add(self, stack: Stack) -> None:
        self._counts[stack] += 1
        self.samples += 1

    def __len__(self) -> int:
        return len(self._counts)

    def __contains__(self, stack: object) -> bool:
        return stack in self._counts

    def most_common(self, n: int | None = None) -> list[tuple[Stack, int]]:
        # Counter.most_common is stable: among equal counts, the stack seen first wins.
        return self._counts.most_common(n)


def format_stack(stack: Stack, classifier: FrameClassifier, indent: str = "    ") -> list[str]:
    """One line per frame, outermost first (like a traceback); app frames marked with '>'."""
    return [
        f"{indent}{'>' if classifier.is_app(f.filename) else ' '} {classifier.describe(f)}" for f in stack
    ]
