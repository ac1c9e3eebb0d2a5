"""Stack sampling, merging and app-frame detection; and the lag histogram."""

from __future__ import annotations

import logging
import os
import threading

import pytest
import starlette.routing

from steadyloop.observe import watchdog
from steadyloop.observe.lag import LagHistogram
from steadyloop.observe.stacks import (
    FrameClassifier,
    FrameKey,
    StackCounts,
    format_stack,
    locate,
    sample_thread,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def cls() -> FrameClassifier:
    return FrameClassifier(cwd=REPO)


def test_kinds_and_short_names(cls: FrameClassifier) -> None:
    assert cls.kind(logging.__file__) == "stdlib"
    assert cls.display(logging.__file__) == os.path.join("logging", "__init__.py")
    assert cls.kind(threading.__file__) == "stdlib"
    assert cls.kind(starlette.routing.__file__) == "library"
    assert cls.display(starlette.routing.__file__) == os.path.join("starlette", "routing.py")
    assert cls.kind(watchdog.__file__) == "steadyloop"
    assert cls.display(watchdog.__file__) == os.path.join("steadyloop", "observe", "watchdog.py")
    assert cls.kind(__file__) == "app"
    assert cls.display(__file__) == os.path.join("tests", "observe", "test_stacks.py")
    assert cls.kind("<frozen importlib._bootstrap>") == "stdlib"
    assert cls.kind("<string>") == "app"


def test_app_outside_the_working_directory_keeps_its_absolute_path(
    tmp_path: os.PathLike[str],
) -> None:
    cls = FrameClassifier(cwd=str(tmp_path))
    assert cls.kind(__file__) == "app"
    assert cls.display(__file__) == os.path.realpath(__file__)


def test_vendored_site_packages_is_a_library(cls: FrameClassifier) -> None:
    path = os.path.join(os.sep, "opt", "env", "lib", "site-packages", "pkg", "mod.py")
    assert cls.kind(path) == "library"
    assert cls.display(path) == os.path.join("pkg", "mod.py")


def _frame(path: str, line: int, fn: str) -> FrameKey:
    return FrameKey(path, line, fn)


def test_locate_names_app_frame_entry_and_where_it_was_stuck(cls: FrameClassifier) -> None:
    runners = os.path.join(os.path.dirname(logging.__file__), "..", "asyncio", "runners.py")
    stack = (
        _frame(os.path.realpath(runners), 118, "Runner.run"),
        _frame(__file__, 10, "endpoint"),
        _frame(__file__, 20, "helper"),
        _frame(logging.__file__, 1489, "Logger.info"),
        _frame(logging.__file__, 1113, "StreamHandler.emit"),
    )
    where = locate(stack, cls)
    assert where.app_frame == stack[2]
    assert where.entry == stack[3]
    assert where.stuck_in == stack[4]
    lines = format_stack(stack, cls, indent="")
    assert lines[1].startswith("> tests") and lines[2].startswith("> tests")
    assert lines[4] == f"  {os.path.join('logging', '__init__.py')}:1113 in StreamHandler.emit"


def test_locate_when_the_app_frame_is_innermost_or_absent(cls: FrameClassifier) -> None:
    app = _frame(__file__, 5, "block")
    lib = _frame(logging.__file__, 1, "f")
    assert locate((lib, app), cls) == type(locate((), cls))(app, None, None)
    assert locate((lib,), cls).app_frame is None and locate((lib,), cls).stuck_in == lib
    assert locate((), cls).stuck_in is None


def parked_here(entered: threading.Event, release: threading.Event) -> None:
    entered.set()
    release.wait(10)


def test_sample_another_thread() -> None:
    entered, release = threading.Event(), threading.Event()
    t = threading.Thread(target=parked_here, args=(entered, release))
    t.start()
    try:
        assert entered.wait(10)
        assert t.ident is not None
        stack = sample_thread(t.ident)
    finally:
        release.set()
        t.join(10)
    assert stack is not None
    names = [f.function for f in stack]
    assert "parked_here" in names
    assert names.index("parked_here") < len(names) - 1  # Event.wait frames are deeper
    assert stack[0].function.endswith("_bootstrap")  # outermost first
    assert sample_thread(-1) is None


def test_identical_samples_merge() -> None:
    a = (_frame("x.py", 1, "f"),)
    b = (_frame("x.py", 2, "f"),)
    counts = StackCounts()
    for s in (b, a, a, b, a):
        counts.add(s)
    assert counts.samples == 5 and len(counts) == 2
    assert counts.most_common() == [(a, 3), (b, 2)]
    assert a in counts


def test_lag_histogram() -> None:
    h = LagHistogram((0.01, 0.1))
    for v in (-0.001, 0.005, 0.01, 0.05, 3.0):
        h.record(v)
    snap = h.snapshot()
    assert snap["buckets"] == [(0.01, 3), (0.1, 4), (float("inf"), 5)]
    assert snap["count"] == 5 and snap["max"] == 3.0
    assert snap["sum"] == pytest.approx(3.065)
    with pytest.raises(ValueError):
        LagHistogram((0.1, 0.01))
