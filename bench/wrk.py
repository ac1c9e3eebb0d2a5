"""Running wrk and reading its `--latency` report.

Parsing is pure (text in, numbers out) so that it can be tested without
running wrk.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

# wrk prints times with these units (see its print_units/fmt_time).
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(us|ms|s|m|h)")
_RPS = re.compile(r"^Requests/sec:\s+([0-9]+(?:\.[0-9]+)?)\s*$", re.MULTILINE)
_TOTAL = re.compile(r"^\s*([0-9]+) requests in ", re.MULTILINE)
_PERCENTILE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)%\s+(\S+)\s*$", re.MULTILINE)
_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)"
)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: ([0-9]+)")


class WrkError(RuntimeError):
    """wrk failed or printed something that is not a wrk report."""


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    p50_ms: float | None  # None where wrk's percentiles mean nothing (pipelining)
    p99_ms: float | None
    requests: int
    socket_errors: int  # connect + read + write + timeout
    non_2xx: int


def parse_duration_ms(text: str) -> float:
    """'812.00us' -> 0.812, '1.20ms' -> 1.2, '2.00s' -> 2000.0."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise WrkError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


def parse_wrk_output(text: str, *, pipelined: bool = False) -> WrkResult:
    """Read requests/s, p50, p99 and error counts from `wrk --latency` output.

    With pipelining wrk records one latency sample per batch of requests but
    ranks percentiles against the number of requests, so its percentiles are
    wrong (often printed as 0.00us); they are dropped rather than reported.
    """
    rps = _RPS.search(text)
    total = _TOTAL.search(text)
    if rps is None or total is None:
        raise WrkError("no 'Requests/sec' line in wrk output:\n" + text.strip())
    percentiles: dict[float, float] = {}
    if "Latency Distribution" in text:
        section = text.split("Latency Distribution", 1)[1]
        for match in _PERCENTILE.finditer(section):
            percentiles[float(match.group(1))] = parse_duration_ms(match.group(2))
    socket_errors = 0
    errors = _SOCKET_ERRORS.search(text)
    if errors is not None:
        socket_errors = sum(int(group) for group in errors.groups())
    non_2xx = _NON_2XX.search(text)
    return WrkResult(
        requests_per_s=float(rps.group(1)),
        p50_ms=None if pipelined else percentiles.get(50.0),
        p99_ms=None if pipelined else percentiles.get(99.0),
        requests=int(total.group(1)),
        socket_errors=socket_errors,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def wrk_command(
    url: str,
    *,
    connections: int,
    duration_s: float,
    cpu: int | None,
    script: Path | None = None,
    script_args: tuple[str, ...] = (),
    wrk: str = "wrk",
) -> list[str]:
    """The wrk command line: one thread, optionally pinned to one CPU."""
    argv = ["taskset", "-c", str(cpu)] if cpu is not None else []
    # wrk's -d takes whole seconds (or units); below 1 s it would run 0 s.
    argv += [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s", "--latency"]
    if script is not None:
        argv += ["-s", str(script)]
    argv.append(url)
    if script_args:
        argv += ["--", *script_args]
    return argv


def run_wrk(argv: list[str], *, duration_s: float, pipelined: bool) -> WrkResult:
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            # wrk stops itself after -d; the margin covers start-up and its
            # final wait for outstanding responses.
            timeout=duration_s + 30,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk did not finish within {duration_s + 30:.0f} s") from exc
    if done.returncode != 0:
        raise WrkError(f"wrk exited with {done.returncode}: {done.stderr.strip() or done.stdout}")
    return parse_wrk_output(done.stdout, pipelined=pipelined)
