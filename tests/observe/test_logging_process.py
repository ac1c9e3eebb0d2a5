"""The log pipeline in real processes, writing to real pipes that we stall on purpose.

Each test runs a small Python program (CHILD below) that calls setup_logging()
and then a scenario. The child reports progress as JSON lines on a control
pipe (fd passed in argv), so the test knows when the child has logged
everything while its stdout pipe is still unread: the pipe is full and the
writer thread is stuck, exactly like a container log driver that fell behind.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = textwrap.dedent(
    """
    import faulthandler, fcntl, json, logging, os, select, signal, sys, threading, time
    # If a test ever times out waiting for this child, it asks for every thread's stack.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    spec = json.loads(sys.argv[1])
    ctl = int(sys.argv[2])

    def tell(**fields):
        os.write(ctl, (json.dumps(fields) + "\\n").encode())

    def wait_forever():
        r, _ = os.pipe()
        select.select([r], [], [])

    from steadyloop.config import LogOptions
    from steadyloop.observe.logsetup import setup_logging
    from steadyloop.observe.logadopt import QueuedHandler

    pipeline = setup_logging(LogOptions(**spec.get("options", {})))
    log = logging.getLogger("app")
    if spec.get("handler", True):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter(spec.get("format", "%(message)s")))
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)
        log.propagate = False
    with open(spec["body_file"]) as f:
        # A real file, so that tracebacks show source lines.
        exec(compile(f.read(), spec["body_file"], "exec"))
    """
)


class Child:
    """A child process whose stdout we read only when we choose to."""

    def __init__(self, body: str, body_file: str, stdout: int | None = None, **spec: Any) -> None:
        with open(body_file, "w") as f:
            f.write(textwrap.dedent(body))
        spec["body_file"] = body_file
        self._ctl_r, ctl_w = os.pipe()
        env = dict(os.environ, PYTHONPATH=ROOT)
        env.pop("PYTHONUNBUFFERED", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps(spec), str(ctl_w)],
            stdout=subprocess.PIPE if stdout is None else stdout,
            stderr=subprocess.PIPE,
            pass_fds=(ctl_w,),
            cwd=ROOT,
            env=env,
        )
        os.close(ctl_w)
        self._ctl_buf = b""
        self.events: list[dict[str, Any]] = []

    def event(self, name: str, timeout: float = 30.0) -> dict[str, Any]:
        """Wait (with a deadline) for the child to report `name` on the control pipe."""
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.events:
                if ev.get("event") == name:
                    return ev
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"child did not report {name!r} in {timeout}s; stderr: "
                                     f"{self._stderr_now()!r}")
            ready, _, _ = select.select([self._ctl_r], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self._ctl_r, 65536)
            if not chunk:
                raise AssertionError(f"child exited before {name!r}; stderr: {self._stderr_now()!r}")
            self._ctl_buf += chunk
            *lines, self._ctl_buf = self._ctl_buf.split(b"\n")
            self.events.extend(json.loads(line) for line in lines if line)

    def no_event(self, name: str, within: float) -> bool:
        try:
            self.event(name, timeout=within)
        except AssertionError:
            return True
        return False

    def _stderr_now(self) -> bytes:
        if self.proc.poll() is None or self.proc.stderr is None:
            return b"(still running)"
        return self.proc.stderr.read()

    def output(self, timeout: float = 30.0) -> tuple[bytes, bytes]:
        """Read stdout and stderr until the child closes them, then reap it."""
        try:
            out, err = read_all([self.proc.stdout, self.proc.stderr], timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; {self._where_it_hangs()}") from None
        self.proc.wait(timeout)
        return out, err

    def _where_it_hangs(self) -> str:
        """For a child that outlived a deadline: its threads' stacks (faulthandler on SIGUSR1)."""
        if self.proc.poll() is not None:
            return f"the child exited ({self.proc.returncode}) but its pipes stayed open"
        self.proc.send_signal(signal.SIGUSR1)
        assert self.proc.stderr is not None
        said = b""
        deadline = time.monotonic() + 5
        while b"most recent call first" not in said or time.monotonic() < deadline - 4:
            ready, _, _ = select.select([self.proc.stderr], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(self.proc.stderr.fileno(), 1 << 16) if ready else b""
            if not chunk:
                break
            said += chunk
        return "the child still runs; its threads: " + said.decode(errors="replace")[-4000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()
        os.close(self._ctl_r)


def read_all(files: list[Any], timeout: float) -> tuple[bytes, ...]:
    """Read every file (pipe) to EOF within `timeout`."""
    fds = [f.fileno() if hasattr(f, "fileno") else f for f in files if f is not None]
    data: dict[int, list[bytes]] = {fd: [] for fd in fds}
    open_fds = set(fds)
    deadline = time.monotonic() + timeout
    while open_fds:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "pipes not closed in time"
        ready, _, _ = select.select(list(open_fds), [], [], remaining)
        for fd in ready:
            chunk = os.read(fd, 1 << 20)
            if chunk:
                data[fd].append(chunk)
            else:
                open_fds.discard(fd)
    return tuple(b"".join(data[fd]) for fd in fds)


class Children(list[Child]):
    def __init__(self, directory: str) -> None:
        super().__init__()
        self.directory = directory


@pytest.fixture
def children(tmp_path: Any) -> Iterator[Children]:
    made = Children(str(tmp_path))
    yield made
    for child in made:
        child.close()


def spawn(children: Children, body: str, **spec: Any) -> Child:
    body_file = os.path.join(children.directory, f"scenario_{len(children)}.py")
    child = Child(body, body_file, **spec)
    children.append(child)
    return child


DROP_NOTICE = re.compile(rb"steadyloop: dropped (\d+) log records? \((\w+)\) while the log sink was blocked")


def drop_notices(out: bytes) -> dict[str, int]:
    said: dict[str, int] = {}
    for count, level in DROP_NOTICE.findall(out):
        said[level.decode()] = said.get(level.decode(), 0) + int(count)
    return said


# -- tests ---------------------------------------------------------------------------------


def test_stalled_pipe_never_blocks_caller_and_every_gap_is_reported(children: Children) -> None:
    child = spawn(
        children,
        """
        worst = 0.0
        for i in range(20000):
            t = time.perf_counter()
            log.info("line %d %s", i, "x" * 80)
            worst = max(worst, time.perf_counter() - t)
        tell(event="logged", worst=worst, pending=pipeline.pending())
        pipeline.shutdown(30)
        tell(event="done", dropped=pipeline.dropped(), lost=pipeline.lost())
        """,
        options={"queue_records": 1000},
    )
    logged = child.event("logged")  # nobody has read stdout yet: 2 MB into a 64 KB pipe
    assert logged["worst"] < 0.1, f"a log call waited {logged['worst']:.3f}s for the sink"
    out, err = child.output()
    done = child.event("done")
    assert child.proc.returncode == 0, err
    numbers = [int(n) for n in re.findall(rb"^line (\d+) x+$", out, re.M)]
    assert numbers == sorted(numbers), "lines out of order"
    assert len(set(numbers)) == len(numbers)
    dropped = done["dropped"].get("INFO", 0)
    assert dropped > 0, "the test did not fill the queue"
    assert len(numbers) + dropped == 20000
    assert drop_notices(out) == {"INFO": dropped}, "the log must say exactly what it dropped"
    assert done["lost"] == 0


def test_block_policy_makes_the_caller_wait_and_loses_nothing(children: Children) -> None:
    child = spawn(
        children,
        """
        tell(event="started")
        for i in range(3000):
            log.info("line %d %s", i, "y" * 200)
        tell(event="logged")
        pipeline.shutdown(30)
        tell(event="done", dropped=pipeline.dropped())
        """,
        options={"overflow": "block", "queue_records": 100},
    )
    child.event("started")
    # 600 KB cannot fit a 64 KB pipe plus 100 queued records: the caller must be held.
    assert child.no_event("logged", within=0.5)
    out, _err = child.output()
    assert child.event("done")["dropped"] == {}
    numbers = [int(n) for n in re.findall(rb"^line (\d+) y+$", out, re.M)]
    assert numbers == list(range(3000))


def test_warnings_survive_when_info_is_dropped(children: Children) -> None:
    child = spawn(
        children,
        """
        for i in range(5000):
            log.info("info %d %s", i, "z" * 100)
        for i in range(15):  # 10% of the queue (20 records) is kept for WARNING and up
            log.warning("warning %d", i)
        tell(event="logged")
        pipeline.shutdown(30)
        tell(event="done", dropped=pipeline.dropped())
        """,
        options={"queue_records": 200},
    )
    child.event("logged")
    out, _ = child.output()
    done = child.event("done")
    warnings = [int(n) for n in re.findall(rb"^warning (\d+)$", out, re.M)]
    assert warnings == list(range(15))
    assert "WARNING" not in done["dropped"]
    assert done["dropped"]["INFO"] > 0


def test_sigterm_drains_a_full_queue(children: Children) -> None:
    child = spawn(
        children,
        """
        for i in range(5000):
            log.info("line %d %s", i, "s" * 100)
        tell(event="logged", pending=pipeline.pending())
        wait_forever()
        """,
    )
    logged = child.event("logged")
    assert logged["pending"] > 1000, "the queue should hold what the pipe could not take"
    child.proc.send_signal(signal.SIGTERM)
    out, err = child.output()
    numbers = [int(n) for n in re.findall(rb"^line (\d+) s+$", out, re.M)]
    assert numbers == list(range(5000))
    assert child.proc.returncode == 128 + signal.SIGTERM, err


def test_drain_deadline_passes_and_the_count_goes_to_stderr(children: Children) -> None:
    child = spawn(
        children,
        """
        for i in range(3000):
            log.info("line %d %s", i, "d" * 100)
        tell(event="logged", pending=pipeline.pending())
        pipeline.shutdown(0.3)
        tell(event="done", lost=pipeline.lost())
        """,
    )
    logged = child.event("logged")
    started = time.monotonic()
    done = child.event("done", timeout=10)  # stdout is still not read: the drain must give up
    assert time.monotonic() - started < 5
    # The process must exit although its writer thread is stuck; read only afterwards,
    # so that the stuck write cannot complete and make the count stale.
    child.proc.wait(10)
    out, err = child.output()
    assert done["lost"] > 0
    assert logged["pending"] >= done["lost"]
    said = re.search(rb"steadyloop: (\d+) log records could not be written within 0.3 s", err)
    assert said is not None, err
    assert int(said.group(1)) == done["lost"]
    numbers = [int(n) for n in re.findall(rb"^line (\d+) d+$", out, re.M)]
    assert len(numbers) + done["lost"] == 3000


def test_normal_exit_drains_through_atexit(children: Children) -> None:
    child = spawn(
        children,
        """
        for i in range(4000):
            log.info("line %d %s", i, "e" * 100)
        tell(event="logged", pending=pipeline.pending())
        """,
    )
    assert child.event("logged")["pending"] > 0
    out, _ = child.output()
    assert child.proc.returncode == 0
    assert [int(n) for n in re.findall(rb"^line (\d+) e+$", out, re.M)] == list(range(4000))


def test_unhandled_error_still_drains(children: Children) -> None:
    child = spawn(
        children,
        """
        for i in range(4000):
            log.info("line %d %s", i, "f" * 100)
        tell(event="logged")
        raise RuntimeError("fatal")
        """,
    )
    child.event("logged")
    out, err = child.output()
    assert child.proc.returncode == 1
    assert b"RuntimeError: fatal" in err
    assert [int(n) for n in re.findall(rb"^line (\d+) f+$", out, re.M)] == list(range(4000))


def test_mutable_args_are_rendered_when_logged(children: Children) -> None:
    child = spawn(
        children,
        """
        class Shifty:
            value = "before"
            def __str__(self):
                return self.value
        d = {"n": 1}
        items = [1, 2]
        s = Shifty()
        log.info("dict=%s list=%s obj=%s", d, items, s)
        log.info("named %(a)s", {"a": d})
        log.info(d)  # a non-string message with no args
        d["n"] = 2
        items.append(3)
        s.value = "after"
        pipeline.shutdown(10)
        """,
    )
    out, err = child.output()
    assert out.splitlines() == [
        b"dict={'n': 1} list=[1, 2] obj=before",
        b"named {'n': 1}",
        b"{'n': 1}",
    ], err


def test_exceptions_and_stacks_are_rendered_by_the_writer(children: Children) -> None:
    child = spawn(
        children,
        """
        def inner():
            raise ValueError("boom")

        def outer():
            try:
                inner()
            except ValueError as exc:
                raise KeyError("wrapped") from exc

        try:
            outer()
        except KeyError:
            log.exception("failed: %s", "request 7")
        log.info("here", stack_info=True)
        log.error("no exception", exc_info=False)
        pipeline.shutdown(10)
        """,
        format="%(levelname)s %(message)s",
    )
    out, err = child.output()
    text = out.decode()
    assert text.startswith("ERROR failed: request 7\nTraceback (most recent call last):\n"), text
    assert 'raise ValueError("boom")' in text  # source lines are read by the writer
    assert "ValueError: boom" in text
    assert "The above exception was the direct cause of the following exception:" in text
    assert "KeyError: 'wrapped'" in text
    assert "in inner" in text and "in outer" in text
    assert "INFO here\nStack (most recent call last):" in text
    assert "ERROR no exception\n" in text
    assert not err


def test_several_processes_on_one_pipe_never_tear_a_line(children: Children) -> None:
    r, w = os.pipe()
    body = """
        tag = spec["tag"]
        sizes = [10, 300, 3000, 4090, 5000, 20000, 70000, 120]
        for i in range(80):
            n = sizes[i % len(sizes)]
            log.info("%s %d %d %s", tag, i, n, tag * n)
        tell(event="logged")
        pipeline.shutdown(60)
        """
    try:
        procs = [spawn(children, body, stdout=w, tag=tag) for tag in "abcd"]
    finally:
        os.close(w)
    try:
        for child in procs:
            child.event("logged")  # all four are blocked on the full pipe now
        (out,) = read_all([r], timeout=60)
    finally:
        os.close(r)
    lines = out.split(b"\n")
    assert lines[-1] == b""
    seen: dict[str, list[int]] = {}
    for line in lines[:-1]:
        m = re.fullmatch(rb"([a-d]) (\d+) (\d+) ([a-d]*)", line)
        assert m is not None, f"torn line: {line[:80]!r}...{line[-80:]!r}"
        tag, i, n, payload = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
        assert payload == tag * n, f"line {tag!r} {i} interleaved with another process"
        seen.setdefault(tag.decode(), []).append(i)
    assert seen == {tag: list(range(80)) for tag in "abcd"}


def test_print_keeps_working_and_stdio_stays_blocking(children: Children) -> None:
    child = spawn(
        children,
        """
        for i in range(2000):
            log.info("line %d %s", i, "p" * 100)
        print("printed while the pipe is full", flush=False)
        flags = [bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK) for fd in (0, 1, 2)]
        tell(event="logged", nonblocking=flags)
        pipeline.shutdown(30)
        print("printed after shutdown")
        """,
    )
    assert child.event("logged")["nonblocking"] == [False, False, False]
    out, _ = child.output()
    assert b"printed while the pipe is full\n" in out
    assert out.endswith(b"printed after shutdown\n")
    assert len(re.findall(rb"^line \d+ p+$", out, re.M)) == 2000


def test_handlers_added_later_are_adopted(children: Children) -> None:
    child = spawn(
        children,
        """
        from steadyloop.observe.logadopt import SYNC_ATTR
        late = logging.getLogger("late")
        late.addHandler(logging.StreamHandler(sys.stdout))       # through addHandler
        sneaky = logging.getLogger("sneaky")
        sneaky.handlers.append(logging.StreamHandler(sys.stdout))  # straight into the list
        opted = logging.StreamHandler(sys.stdout)
        setattr(opted, SYNC_ATTR, True)
        logging.getLogger("opted").addHandler(opted)
        logging.basicConfig(stream=sys.stdout)                      # the root logger

        deadline = time.monotonic() + 10
        while not isinstance(sneaky.handlers[0], QueuedHandler) and time.monotonic() < deadline:
            threading.Event().wait(0.02)
        tell(
            event="types",
            late=type(late.handlers[0]).__name__,
            sneaky=type(sneaky.handlers[0]).__name__,
            opted=type(logging.getLogger("opted").handlers[0]).__name__,
            root=type(logging.getLogger().handlers[0]).__name__,
            last_resort=type(logging.lastResort).__name__,
            contains=opted in logging.getLogger("opted").handlers,
        )
        h = late.handlers[0].target
        late.removeHandler(h)  # removing the real handler removes its stand-in
        tell(event="removed", left=len(late.handlers), had=h in late.handlers)
        pipeline.shutdown(10)
        """,
    )
    types = child.event("types")
    assert types == {
        "event": "types",
        "late": "QueuedHandler",
        "sneaky": "QueuedHandler",
        "opted": "StreamHandler",
        "root": "QueuedHandler",
        "last_resort": "QueuedHandler",
        "contains": True,
    }
    assert child.event("removed") == {"event": "removed", "left": 0, "had": False}
    child.output()


def test_app_dictconfig_at_import_is_adopted_and_server_loggers_stay_on(
    children: Children,
) -> None:
    child = spawn(
        children,
        """
        import logging.config
        # What an app does at import time; disable_existing_loggers defaults to True.
        logging.config.dictConfig({
            "version": 1,
            "formatters": {"f": {"format": "APP %(name)s %(message)s"}},
            "handlers": {"out": {"class": "logging.StreamHandler", "formatter": "f",
                                 "stream": "ext://sys.stdout"}},
            "root": {"handlers": ["out"], "level": "INFO"},
        })
        pipeline.adopt_handlers()
        logging.getLogger("myapp").info("hello")
        logging.getLogger("steadyloop.error").info("server still talks")
        tell(event="types", root=type(logging.getLogger().handlers[0]).__name__)
        pipeline.shutdown(10)
        """,
        handler=False,
    )
    assert child.event("types")["root"] == "QueuedHandler"
    out, err = child.output()
    assert out == b"APP myapp hello\n"
    assert b"[INFO] server still talks" in err


def test_log_sync_turns_everything_off(children: Children) -> None:
    child = spawn(
        children,
        """
        log.info("sync line")
        names = sorted(t.name for t in threading.enumerate())
        tell(event="state", handler=type(log.handlers[0]).__name__, threads=names)
        pipeline.shutdown(1)
        """,
        options={"sync": True},
    )
    state = child.event("state")
    assert state["handler"] == "StreamHandler"
    assert "steadyloop-log-writer" not in state["threads"]
    out, _ = child.output()
    assert out == b"sync line\n"


def test_writer_thread_runs_and_levels_apply(children: Children) -> None:
    child = spawn(
        children,
        """
        server = logging.getLogger("steadyloop.error")
        server.debug("hidden at info")
        server.log(5, "hidden trace")
        server.warning("shown")
        tell(event="state", threads=[t.name for t in threading.enumerate()],
             trace=logging.getLevelName(5))
        pipeline.shutdown(10)
        """,
        options={"level": "info"},
    )
    state = child.event("state")
    assert "steadyloop-log-writer" in state["threads"]
    assert state["trace"] == "TRACE"
    _, err = child.output()
    assert b"[WARNING] shown" in err
    assert b"hidden" not in err


def test_trace_level(children: Children) -> None:
    child = spawn(
        children,
        """
        logging.getLogger("steadyloop.error").log(5, "trace shown")
        pipeline.shutdown(10)
        """,
        options={"level": "trace"},
    )
    _, err = child.output()
    assert b"[TRACE] trace shown" in err


def test_access_log_goes_through_the_queue_in_order_with_app_logs(children: Children) -> None:
    child = spawn(
        children,
        """
        from steadyloop.observe.access import AccessLog
        access = AccessLog(pipeline, "%m %U %s")
        worst = 0.0
        for i in range(20000):
            t = time.perf_counter()
            access.log("127.0.0.1", "GET", f"/n/{i}", "1.1", 200, 0, 0.001, "", [], [])
            worst = max(worst, time.perf_counter() - t)
            if i % 1000 == 0:
                log.info("app %d", i)
        tell(event="logged", worst=worst)
        pipeline.shutdown(30)
        tell(event="done", dropped=pipeline.dropped())
        """,
        options={"queue_records": 500},
    )
    assert child.event("logged")["worst"] < 0.1
    out, _ = child.output()
    dropped = child.event("done")["dropped"]
    lines = [line for line in out.splitlines() if not DROP_NOTICE.search(line)]
    order = []
    for line in lines:
        m = re.fullmatch(rb"GET /n/(\d+) 200|app (\d+)", line)
        assert m is not None, line
        # An app line logged after access line i sorts between i and i + 1.
        order.append(int(m.group(1)) if m.group(1) else int(m.group(2)) + 0.5)
    assert order == sorted(order)
    assert dropped["INFO"] > 0
    assert len(lines) + dropped["INFO"] == 20000 + 20
    assert drop_notices(out) == {"INFO": dropped["INFO"]}


def test_custom_format_exception_and_last_resort(children: Children) -> None:
    child = spawn(
        children,
        """
        class OneLine(logging.Formatter):
            def formatException(self, ei):
                return f"<{ei[0].__name__}: {ei[1]}>"

        handler.setFormatter(OneLine("%(message)s"))
        try:
            {}["missing"]
        except KeyError:
            log.exception("lookup failed")
        # No handler anywhere for this logger: Python falls back to logging.lastResort.
        logging.getLogger("orphan").warning("nobody configured me")
        pipeline.shutdown(10)
        """,
    )
    out, err = child.output()
    assert out == b"lookup failed\n<KeyError: 'missing'>\n"
    # In the server's format, naming its logger (steadyloop/observe/logformat.py).
    assert re.fullmatch(rb"\[[^]]+\] \[\d+\] \[WARNING\] orphan: nobody configured me\n", err), err


def test_file_handlers_batched_and_not(children: Children) -> None:
    plain = os.path.join(children.directory, "plain.log")
    rotating = os.path.join(children.directory, "rotating.log")
    child = spawn(
        children,
        f"""
        import logging.handlers
        files = logging.getLogger("files")
        files.setLevel(logging.INFO)
        files.addHandler(logging.FileHandler({plain!r}))              # batched on its fd
        files.addHandler(logging.handlers.RotatingFileHandler({rotating!r}, maxBytes=10**9))
        for i in range(2000):
            files.info("record %d", i)
        tell(event="types", types=[type(h).__name__ for h in files.handlers])
        pipeline.shutdown(10)
        """,
    )
    assert child.event("types")["types"] == ["QueuedHandler", "QueuedHandler"]
    child.output()
    for path in (plain, rotating):
        with open(path) as f:
            assert f.read().splitlines() == [f"record {i}" for i in range(2000)]
