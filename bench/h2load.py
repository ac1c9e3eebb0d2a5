"""Running h2load (nghttp2's HTTP/2 load generator) and reading its report into the same
result shape as wrk's, for the HTTP/2 cases."""

from __future__ import annotations

import re
import subprocess

from bench.wrk import WrkError, WrkResult

_FINISHED = re.compile(r"finished in [\d.]+m?s, ([\d.]+) req/s")
_REQUESTS = re.compile(
    r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)


def h2load_command(url: str, *, connections: int, streams: int, duration_s: float,
                   cpu: int | None, h2load: str = "h2load") -> list[str]:
    argv = ["taskset", "-c", str(cpu)] if cpu is not None else []
    return [*argv, h2load, "-t", "1", "-c", str(connections), "-m", str(streams),
            "-D", str(max(1, round(duration_s))), url]


def parse_h2load_output(text: str) -> WrkResult:
    finished = _FINISHED.search(text)
    requests = _REQUESTS.search(text)
    if finished is None or requests is None:
        raise WrkError(f"not an h2load report: {text.strip()[:200]!r}")
    total, _succeeded, failed, errored, timeout = (int(g) for g in requests.groups())
    # h2load prints no latency percentiles; "failed" means a non-2xx answer.
    return WrkResult(float(finished.group(1)), None, None, total, errored + timeout, failed)


def run_h2load(argv: list[str], *, duration_s: float) -> WrkResult:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 30,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"h2load did not finish within {duration_s + 30:.0f} s") from exc
    if done.returncode != 0:
        raise WrkError(f"h2load exited with {done.returncode}: {done.stderr.strip() or done.stdout}")
    return parse_h2load_output(done.stdout)
