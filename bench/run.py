"""Side-by-side benchmark: steadyloop against its peers, alternately, with medians.

    .venv/bin/python bench/run.py --runs 5 --duration 5
    .venv/bin/python bench/run.py --cases a64,c --servers steadyloop,uvicorn --runs 3
    .venv/bin/python bench/run.py --list

Per case, every selected server is started once (pinned to CPU 0, wrk to
CPU 1), warmed up, then measured in turns: A, B, C, A, B, C, ... so that
whatever else the machine is doing is spread over all of them. See
bench/README.md for what each case means and how to read the numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    # Run as `python bench/run.py`: make `bench` importable as a package.
    sys.path.insert(0, str(ROOT))

from bench.cases import CASES, SERVERS, VARIANTS, Case, missing_server, server_argv  # noqa: E402
from bench.h2load import h2load_command, run_h2load  # noqa: E402
from bench.procs import Fleet, ServerProcess, ServerStartError, fleet, free_port  # noqa: E402
from bench.report import CaseResult, VariantRuns, render_markdown, render_text, to_json  # noqa: E402
from bench.wrk import WrkError, WrkResult, run_wrk, wrk_command  # noqa: E402

HOST = "127.0.0.1"
SERVER_CPU = 0
WRK_CPU = 1
PIPELINE_SCRIPT = ROOT / "bench" / "pipeline.lua"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Benchmark steadyloop against uvicorn, granian, gunicorn and hypercorn "
                    "with wrk (and h2load for HTTP/2).",
    )
    parser.add_argument("--runs", type=int, default=5, help="measured runs per server per case")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds of unmeasured load after each server start")
    parser.add_argument("--cases", default="all",
                        help=f"comma-separated, from: {','.join(CASES)} (default: all)")
    parser.add_argument("--servers", default="all",
                        help=f"comma-separated, from: {','.join(SERVERS)} (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results",
                        help="where latest.md and latest.json go")
    parser.add_argument("--start-timeout", type=float, default=30.0,
                        help="seconds a server may take to answer its first request")
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset at all")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the servers' output files and print where they are")
    parser.add_argument("--wrk", default="wrk", help="the wrk executable")
    parser.add_argument("--list", action="store_true", help="list cases and servers, then exit")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.duration < 1 or args.warmup < 0:
        parser.error("--runs and --duration must be at least 1, --warmup at least 0")
    try:
        args.case_keys = select(args.cases, tuple(CASES), "case")
        args.server_keys = select(args.servers, SERVERS, "server")
    except ValueError as exc:
        parser.error(str(exc))
    return args


def select(spec: str, known: tuple[str, ...], what: str) -> list[str]:
    """'all' or a comma-separated subset of `known`, in the order given."""
    if spec.strip() == "all":
        return list(known)
    chosen = [item.strip() for item in spec.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in known]
    if unknown or not chosen:
        raise ValueError(f"unknown {what}(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(known)}")
    return list(dict.fromkeys(chosen))


def can_pin() -> bool:
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return False
    return shutil.which("taskset") is not None and {SERVER_CPU, WRK_CPU} <= cpus


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _wrk_version(wrk: str) -> str:
    try:
        out = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    first = (out.stdout or out.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0] if first else "unknown"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def machine_meta(args: argparse.Namespace, pinned: bool) -> dict[str, Any]:
    dists = ("steadyloop", "uvicorn", "uvloop", "httptools", "granian", "gunicorn", "fastapi",
             "hypercorn", "h2")
    python = os.path.relpath(sys.executable) if sys.executable.startswith(str(Path.cwd())) \
        else sys.executable
    return {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": shlex.join([python, *sys.argv]),
        "machine": f"{_cpu_model()}, {os.cpu_count()} CPUs, {platform.system()} "
                   f"{platform.release()}, Python {platform.python_version()}",
        "versions": ", ".join([*(f"{d} {_version(d)}" for d in dists), _wrk_version(args.wrk)]),
        "runs": args.runs,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "pinning": (f"Servers pinned to CPU {SERVER_CPU} and wrk (one thread) to CPU {WRK_CPU} "
                    "with taskset, except in cases marked unpinned" if pinned
                    else "Nothing pinned (--no-pin, no taskset, or fewer than 2 usable CPUs)"),
        "load_start": _load(),
        "load_end": None,
    }


class Started:
    """A server that answered its readiness request, with where it listens."""

    def __init__(self, runs: VariantRuns, server: ServerProcess, port: int) -> None:
        self.runs = runs
        self.server = server
        self.port = port


def make_certs(logdir: Path) -> tuple[str, str]:
    """A throw-away certificate for 127.0.0.1 (and its key), the same for every server."""
    import trustme

    cert = trustme.CA().issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = logdir / "cert.pem", logdir / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))  # PKCS#8, which granian requires
    return str(cert_file), str(key_file)


def start_servers(case: Case, args: argparse.Namespace, pinned: bool, servers: Fleet,
                  logdir: Path) -> tuple[list[VariantRuns], list[Started]]:
    certs = make_certs(logdir) if case.tls else None
    all_runs: list[VariantRuns] = []
    started: list[Started] = []
    for key in case.variants:
        variant = VARIANTS[key]
        if variant.server not in args.server_keys:
            continue
        runs = VariantRuns(key=key, label=variant.label)
        all_runs.append(runs)
        reason = missing_server(variant.server)
        if reason is not None:
            runs.skipped = reason
            print(f"  {variant.label}: skipped ({reason})", flush=True)
            continue
        port = free_port(HOST)
        runs.command = server_argv(key, case, HOST, port, certs)
        argv = (["taskset", "-c", str(SERVER_CPU)] if pinned and case.pinned else []) + runs.command
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        server = servers.add(ServerProcess(variant.label, argv, cwd=ROOT, env=env,
                                           log_path=logdir / f"{case.key}-{key}.log"))
        server.start()
        try:
            server.wait_ready(HOST, port, case.path, case.check, args.start_timeout,
                              tls=case.tls, h2c=bool(case.h2_streams))
        except ServerStartError as exc:
            server.stop()
            runs.skipped = f"did not start: {exc}"
            print(f"  {variant.label}: {runs.skipped}", flush=True)
            continue
        started.append(Started(runs, server, port))
    return all_runs, started


def measure_ws(case: Case, target: Started, pinned: bool, duration_s: float) -> WrkResult:
    """The WebSocket echo case: bench/wsload.py instead of wrk, messages counted as requests."""
    argv = (["taskset", "-c", str(WRK_CPU)] if pinned and case.pinned else []) + [
        sys.executable, "-m", "bench.wsload", "--host", HOST, "--port", str(target.port),
        "--connections", str(case.connections), "--size", "64", "--duration", str(duration_s),
    ]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=duration_s + 60,
                          check=False)
    if done.returncode != 0:
        raise WrkError(f"wsload failed: {done.stderr.strip() or done.stdout.strip()}")
    result = json.loads(done.stdout)
    return WrkResult(requests_per_s=result["messages_per_s"], p50_ms=result["p50_ms"],
                     p99_ms=result["p99_ms"], requests=result["messages"], socket_errors=0,
                     non_2xx=0)


def measure(case: Case, target: Started, args: argparse.Namespace, pinned: bool,
            duration_s: float) -> WrkResult:
    if case.kind == "ws":
        return measure_ws(case, target, pinned, duration_s)
    cpu = WRK_CPU if pinned and case.pinned else None
    url = f"{'https' if case.tls else 'http'}://{HOST}:{target.port}{case.path}"
    if case.h2_streams:
        argv = h2load_command(url, connections=case.connections, streams=case.h2_streams,
                              duration_s=duration_s, cpu=cpu)
        return run_h2load(argv, duration_s=duration_s)
    script = PIPELINE_SCRIPT if case.pipeline else None
    argv = wrk_command(
        url,
        connections=case.connections,
        duration_s=duration_s,
        cpu=cpu,
        script=script,
        script_args=(str(case.pipeline),) if case.pipeline else (),
        wrk=args.wrk,
    )
    return run_wrk(argv, duration_s=duration_s, pipelined=bool(case.pipeline))


def run_case(case: Case, args: argparse.Namespace, pinned: bool, logdir: Path) -> CaseResult:
    print(f"\n-- {case.key}: {case.title}", flush=True)
    with fleet() as servers:
        all_runs, started = start_servers(case, args, pinned, servers, logdir)
        if args.warmup > 0:
            for target in started:
                with contextlib.suppress(WrkError):
                    measure(case, target, args, pinned, args.warmup)
        for run in range(1, args.runs + 1):
            for target in started:
                if not target.server.alive():
                    target.runs.failures.append("server exited")
                    continue
                try:
                    result = measure(case, target, args, pinned, args.duration)
                except WrkError as exc:
                    target.runs.failures.append(str(exc).splitlines()[0])
                    print(f"  run {run}/{args.runs} {target.runs.label}: {exc}", flush=True)
                    continue
                target.runs.runs.append(result)
                p99 = "—" if result.p99_ms is None else f"{result.p99_ms:.2f} ms"
                print(f"  run {run}/{args.runs} {target.runs.label}: "
                      f"{result.requests_per_s:,.0f} req/s, p99 {p99}", flush=True)
    result_case = CaseResult(case.key, case.title, case.baseline, case.pinned, all_runs)
    print(render_text(result_case), flush=True)
    if not case.pinned:
        print("  note: this case runs servers and wrk unpinned (2 workers on a 2-core machine "
              "share the CPUs with wrk)", flush=True)
    return result_case


def estimate_s(cases: list[Case], args: argparse.Namespace) -> float:
    starts = sum(len(c.variants) for c in cases)
    per_start = float(args.warmup) + 2.0 + int(args.runs) * (float(args.duration) + 0.5)
    return starts * per_start


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    # SIGTERM (a CI timeout, `kill`) takes the same clean-up path as Ctrl-C.
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def write_results(out: Path, meta: dict[str, Any], results: list[CaseResult]) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    md, raw = out / "latest.md", out / "latest.json"
    md.write_text(render_markdown(meta, results))
    raw.write_text(json.dumps(to_json(meta, results), indent=2) + "\n")
    return md, raw


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for case in CASES.values():
            print(f"{case.key:5} {case.title}  [{', '.join(case.variants)}; vs {case.baseline}]")
        print("servers:", ", ".join(SERVERS))
        return 0
    if shutil.which(args.wrk) is None:
        print(f"bench: {args.wrk!r} not found; install wrk", file=sys.stderr)
        return 2
    pinned = not args.no_pin and can_pin()
    cases = [CASES[key] for key in args.case_keys]
    if any(case.h2_streams for case in cases) and shutil.which("h2load") is None:
        print("bench: 'h2load' not found; install nghttp2-client", file=sys.stderr)
        return 2
    meta = machine_meta(args, pinned)
    print(f"bench: {len(cases)} case(s), servers {', '.join(args.server_keys)}, "
          f"about {estimate_s(cases, args) / 60:.0f} min. {meta['pinning']}.", flush=True)
    results: list[CaseResult] = []
    logdir = Path(tempfile.mkdtemp(prefix="steadyloop-bench-"))
    try:
        with sigterm_as_interrupt():
            for case in cases:
                results.append(run_case(case, args, pinned, logdir))
    except KeyboardInterrupt:
        print("\nbench: interrupted; every server was stopped, no results written",
              file=sys.stderr)
        return 130
    finally:
        if args.keep_logs:
            print(f"bench: server logs in {logdir}", flush=True)
        else:
            shutil.rmtree(logdir, ignore_errors=True)
    meta["load_end"] = _load()
    md, raw = write_results(args.out, meta, results)
    print(f"\nbench: wrote {os.path.relpath(md)} and {os.path.relpath(raw)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
