"""The bad-logging lab: what a slow log sink does to the event loop, uvicorn vs steadyloop.

    .venv/bin/python bench/bad_logging.py                      # everything, about 3 minutes
    .venv/bin/python bench/bad_logging.py --servers steadyloop --sinks stalled --duration 8

The demo app (`steadyloop.demo:app`: `/async` logs on the loop, `/sync` logs on a
pool thread, `/health` answers at once) is served by each server with its
defaults (access log on, log level info), the server pinned to CPU 0 and wrk to
CPU 1. The server's stdout, where the app's logger and the access log write,
goes to one of three sinks:

  devnull   /dev/null: the sink never waits
  slow      a pipe read at about 200 KB/s: less than the logs need under load
  stalled   a pipe read freely, except that the reader stops for --stall seconds
            in the middle of each phase (a log driver that falls behind)

Each server and sink runs two phases: wrk on `/async`, then on `/sync`, for
--duration seconds each, while a probe asks `/health` every 20 ms (one request
at a time, 10 s timeout) and records when it asked and how long the answer took.

It prints, and writes to bench/results/bad_logging.md, per server, sink and phase:
`/health` p50 / p99 / max, wrk's requests/s and errors, and for the whole run
the log lines emitted (about two per wrk request, one per probe), received by
the reader, and reported dropped (steadyloop writes "steadyloop: dropped N log
records ..."). The plot, bench/results/bad_logging.png, shows `/health`
latency over time, one line per server, one panel per sink and phase; every
probe sample is kept in bench/results/bad_logging.raw (JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

from bench.procs import free_port, http_get  # noqa: E402
from bench.wrk import WrkError, WrkResult, run_wrk, wrk_command  # noqa: E402

HOST = "127.0.0.1"
SERVER_CPU, WRK_CPU = 0, 1
SINKS = ("devnull", "slow", "stalled")
SERVERS = ("uvicorn", "steadyloop")
ENDPOINTS = ("async", "sync")
PROBE_EVERY = 0.02
PROBE_TIMEOUT = 10.0
SLOW_READ = 4096  # bytes per read for the slow sink ...
SLOW_EVERY = 0.02  # ... every this many seconds: about 200 KB/s
NOTICE = re.compile(rb"steadyloop: dropped (\d+) log records? \(\w+\) while the log sink")


def server_argv(server: str, port: int) -> list[str]:
    python = sys.executable
    pin = ["taskset", "-c", str(SERVER_CPU)]
    if server == "uvicorn":
        return [*pin, python, "-m", "uvicorn", "steadyloop.demo:app", "--host", HOST,
                "--port", str(port), "--loop", "uvloop", "--http", "httptools"]
    return [*pin, python, "-m", "steadyloop", "--host", HOST, "--port", str(port)]


# -- the sink: what the server's stdout is ----------------------------------------------------


class Sink:
    """The server's stdout, read by a thread the way the sink's mode says."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.received = 0
        self.dropped = 0
        self._tail = b""
        self._stall: tuple[float, float] = (0.0, 0.0)
        self._reader: threading.Thread | None = None
        self._r = self._w = -1
        if mode != "devnull":
            self._r, self._w = os.pipe()

    def popen_stdout(self) -> Any:
        return subprocess.DEVNULL if self.mode == "devnull" else self._w

    def started(self) -> None:
        """The server has its copy of the write end; read from now on."""
        if self.mode == "devnull":
            return
        os.close(self._w)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def stall_between(self, start: float, end: float) -> None:
        if self.mode == "stalled":
            self._stall = (start, end)

    def finish(self, timeout: float = 60.0) -> None:
        if self._reader is not None:
            self._reader.join(timeout)
            os.close(self._r)

    def _read(self) -> None:
        never = threading.Event()
        while True:
            now = time.monotonic()
            start, end = self._stall
            if start <= now < end:
                never.wait(end - now)  # the reader looks away
                continue
            if self.mode == "slow":
                never.wait(SLOW_EVERY)
                chunk = os.read(self._r, SLOW_READ)
            else:
                ready, _, _ = select.select([self._r], [], [], 0.05)
                if not ready:
                    continue
                chunk = os.read(self._r, 1 << 20)
            if not chunk:
                self._count(b"\n")
                return
            self._count(chunk)

    def _count(self, chunk: bytes) -> None:
        data = self._tail + chunk
        *lines, self._tail = data.split(b"\n")
        for line in lines:
            notice = NOTICE.search(line)
            if notice is not None:
                self.dropped += int(notice.group(1))
            elif line:
                self.received += 1


# -- the probe ------------------------------------------------------------------------------------


class Probe(threading.Thread):
    """GET /health every PROBE_EVERY seconds, one at a time; (sent at, seconds) per answer."""

    def __init__(self, port: int, t0: float) -> None:
        super().__init__(daemon=True)
        self.port, self.t0 = port, t0
        self.samples: list[tuple[float, float]] = []
        self.failures = 0
        self._halt = threading.Event()

    def run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._halt.is_set():
            sent = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(HOST, self.port, timeout=PROBE_TIMEOUT)
                conn.request("GET", "/health")
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                if conn is not None:
                    conn.close()
                conn = None
            took = time.monotonic() - sent
            if ok:
                self.samples.append((sent - self.t0, took))
            else:
                self.failures += 1
                self.samples.append((sent - self.t0, PROBE_TIMEOUT))
            self._halt.wait(max(0.0, PROBE_EVERY - took))
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(PROBE_TIMEOUT + 5)


# -- one server with one sink ----------------------------------------------------------------------


@dataclass
class Phase:
    endpoint: str
    wrk: WrkResult | None
    wrk_error: str | None
    probes: list[tuple[float, float]]
    probe_failures: int

    def health(self, q: float) -> float | None:
        values = sorted(took for _, took in self.probes)
        if not values:
            return None
        return values[min(len(values) - 1, int(len(values) * q))]


@dataclass
class Run:
    server: str
    sink: str
    phases: list[Phase] = field(default_factory=list)
    lines_emitted: int | None = None
    lines_received: int | None = None
    lines_dropped: int | None = None


@contextlib.contextmanager
def serving(server: str, sink: Sink, port: int) -> Iterator[subprocess.Popen[bytes]]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        server_argv(server, port), cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
        stdout=sink.popen_stdout(), stderr=subprocess.DEVNULL, start_new_session=True,
    )
    sink.started()
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{server} exited with {proc.returncode}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if http_get(HOST, port, "/health", timeout_s=1.0)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{server} did not answer /health")
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(0.05)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        sink.finish()


def run_one(server: str, sink_mode: str, args: argparse.Namespace) -> Run:
    run = Run(server, sink_mode)
    sink = Sink(sink_mode)
    port = free_port()
    requests = probes = 0
    with serving(server, sink, port):
        for endpoint in args.endpoints:
            t0 = time.monotonic()
            stall_at = t0 + (args.duration - args.stall) / 2
            sink.stall_between(stall_at, stall_at + args.stall)
            probe = Probe(port, t0)
            probe.start()
            argv = wrk_command(f"http://{HOST}:{port}/{endpoint}", connections=args.connections,
                               duration_s=args.duration, cpu=WRK_CPU, wrk=args.wrk)
            result: WrkResult | None = None
            error = None
            try:
                result = run_wrk(argv, duration_s=args.duration, pipelined=False)
            except WrkError as exc:
                error = str(exc).splitlines()[0]
            probe.stop()
            phase = Phase(endpoint, result, error, probe.samples, probe.failures)
            run.phases.append(phase)
            requests += result.requests if result else 0
            probes += len(probe.samples) - probe.failures
            print(f"  {server:10} {sink_mode:8} /{endpoint:5} {one_phase(phase)}", flush=True)
    if sink_mode != "devnull":
        # One demo line and one access line per request, one access line per probe.
        run.lines_emitted = 2 * requests + probes
        run.lines_received = sink.received
        run.lines_dropped = sink.dropped
    return run


# -- reporting ------------------------------------------------------------------------------------


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def one_phase(phase: Phase) -> str:
    rps = f"{phase.wrk.requests_per_s:8.0f}" if phase.wrk else "       -"
    errors = (phase.wrk.socket_errors + phase.wrk.non_2xx) if phase.wrk else 0
    return (f"req/s {rps}  errors {errors:5}  /health p50 {ms(phase.health(0.5)):>7} "
            f"p99 {ms(phase.health(0.99)):>7} max {ms(phase.health(1.0)):>8} ms")


def table(runs: list[Run]) -> str:
    rows = [
        "| server | sink | load | req/s | wrk errors | /health p50 ms | p99 ms | max ms |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        for phase in run.phases:
            rps = f"{phase.wrk.requests_per_s:.0f}" if phase.wrk else phase.wrk_error or "-"
            errors = (phase.wrk.socket_errors + phase.wrk.non_2xx) if phase.wrk else "-"
            rows.append(
                f"| {run.server} | {run.sink} | /{phase.endpoint} | {rps} | {errors} | "
                f"{ms(phase.health(0.5))} | {ms(phase.health(0.99))} | {ms(phase.health(1.0))} |"
            )
    rows += [
        "",
        "| server | sink | log lines emitted (about) | received | reported dropped |",
        "|---|---|---:|---:|---:|",
    ]
    for run in runs:
        if run.lines_emitted is None:
            continue
        rows.append(f"| {run.server} | {run.sink} | {run.lines_emitted} | {run.lines_received} | "
                    f"{run.lines_dropped} |")
    return "\n".join(rows)


def plot(runs: list[Run], path: Path, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sinks = [s for s in SINKS if any(r.sink == s for r in runs)]
    fig, axes = plt.subplots(len(args.endpoints), len(sinks), squeeze=False, sharey=True,
                             figsize=(5 * len(sinks), 3.4 * len(args.endpoints)))
    colors = {"uvicorn": "tab:red", "steadyloop": "tab:blue"}
    for row, endpoint in enumerate(args.endpoints):
        for col, sink in enumerate(sinks):
            ax = axes[row][col]
            for run in runs:
                if run.sink != sink:
                    continue
                for phase in run.phases:
                    if phase.endpoint == endpoint and phase.probes:
                        xs = [t for t, _ in phase.probes]
                        ys = [max(took * 1000, 0.05) for _, took in phase.probes]
                        # A step per probe: its latency holds until the next probe is
                        # sent, so a probe stuck for seconds shows as a plateau that long.
                        ax.plot(xs, ys, label=run.server, color=colors.get(run.server), lw=1,
                                drawstyle="steps-post")
            if sink == "stalled":
                start = (args.duration - args.stall) / 2
                ax.axvspan(start, start + args.stall, color="0.9", label="reader stopped")
            ax.set_yscale("log")
            ax.set_title(f"wrk on /{endpoint}, stdout: {sink}", fontsize=10)
            ax.set_xlabel("seconds")
            if col == 0:
                ax.set_ylabel("/health latency (ms)")
            ax.grid(True, which="major", alpha=0.3)
            ax.legend(fontsize=8, loc="upper right")
    fig.suptitle("The bad-logging lab: /health while the demo app logs under load", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/bad_logging.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--sinks", default=",".join(SINKS))
    parser.add_argument("--endpoints", default=",".join(ENDPOINTS))
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of wrk per phase")
    parser.add_argument("--stall", type=float, default=5.0,
                        help="seconds the 'stalled' reader stops, mid-phase")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--wrk", default="wrk")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    args.servers = args.servers.split(",")
    args.sinks = args.sinks.split(",")
    args.endpoints = args.endpoints.split(",")
    if args.stall >= args.duration:
        parser.error("--stall must be shorter than --duration")

    runs: list[Run] = []
    for sink in args.sinks:
        for server in args.servers:  # alternate servers within each sink
            runs.append(run_one(server, sink, args))
    text = table(runs)
    print()
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python bench/bad_logging.py " + " ".join(sys.argv[1:] if argv is None else argv)
    (args.out / "bad_logging.md").write_text(
        f"# bad-logging lab\n\n`{command.strip()}` on {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{os.cpu_count()} CPUs\n\n{text}\n\n![/health latency](bad_logging.png)\n"
    )
    # Every probe sample, as JSON; *.raw stays out of git (see .gitignore).
    (args.out / "bad_logging.raw").write_text(json.dumps(
        [{"server": r.server, "sink": r.sink, "lines_emitted": r.lines_emitted,
          "lines_received": r.lines_received, "lines_dropped": r.lines_dropped,
          "phases": [{"endpoint": p.endpoint, "rps": p.wrk.requests_per_s if p.wrk else None,
                      "probes": p.probes, "probe_failures": p.probe_failures} for p in r.phases]}
         for r in runs], indent=1))
    plot(runs, args.out / "bad_logging.png", args)
    print(f"\nwrote {args.out / 'bad_logging.md'} and {args.out / 'bad_logging.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
