"""The pure parts of the benchmark harness: wrk parsing, medians/ratios, reports.

Nothing here runs wrk or a server, and nothing is timed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    # bench/ is a directory of the repository, not an installed package.
    sys.path.insert(0, str(ROOT))

from bench import apps  # noqa: E402
from bench.cases import CASES, VARIANTS, server_argv  # noqa: E402
from bench.h2load import h2load_command, parse_h2load_output  # noqa: E402
from bench.report import (  # noqa: E402
    CaseResult,
    VariantRuns,
    bars,
    median,
    one_line,
    ratio,
    render_markdown,
    render_text,
    spread,
    summarize,
)
from bench.run import select  # noqa: E402
from bench.wrk import (  # noqa: E402
    WrkError,
    WrkResult,
    parse_duration_ms,
    parse_wrk_output,
    wrk_command,
)

WRK_PLAIN = """\
Running 5s test @ http://127.0.0.1:41234/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.21ms  212.40us   9.87ms   91.02%
    Req/Sec    53.10k     1.90k   56.02k    78.00%
  Latency Distribution
     50%    1.16ms
     75%    1.28ms
     90%    1.45ms
     99%    2.03ms
  264211 requests in 5.00s, 33.26MB read
Requests/sec:  52839.54
Transfer/sec:      6.65MB
"""

WRK_ERRORS = """\
Running 3s test @ http://127.0.0.1:41234/
  1 threads and 256 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.00us    1.02ms    1.20s    99.00%
    Req/Sec    20.00k     1.00k   21.00k    70.00%
  Latency Distribution
     50%  640.00us
     75%  700.00us
     90%  800.00us
     99%    1.50s
  60000 requests in 3.00s, 7.00MB read
  Socket errors: connect 0, read 12, write 3, timeout 2
  Non-2xx or 3xx responses: 41
Requests/sec:  19998.12
Transfer/sec:      2.33MB
"""

# wrk with a pipelining script: its percentiles are known to be garbage.
WRK_PIPELINED = """\
Running 1s test @ http://127.0.0.1:8765/
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.41ms    1.55ms  16.84ms   67.25%
    Req/Sec    30.46k     6.17k   39.18k    50.00%
  Latency Distribution
     50%    2.99ms
     75%    4.68ms
     90%    0.00us
     99%    0.00us
  30285 requests in 1.00s, 3.81MB read
Requests/sec:  30266.87
Transfer/sec:      3.81MB
"""


def result(rps: float, p50: float | None = 1.0, p99: float | None = 2.0,
           non_2xx: int = 0, socket_errors: int = 0) -> WrkResult:
    return WrkResult(requests_per_s=rps, p50_ms=p50, p99_ms=p99, requests=int(rps),
                     socket_errors=socket_errors, non_2xx=non_2xx)


# --- wrk output -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ms"),
    [("812.00us", 0.812), ("1.20ms", 1.2), ("2.00s", 2000.0), ("1.50m", 90_000.0), ("3ms", 3.0)],
)
def test_parse_duration_units(text: str, ms: float) -> None:
    assert parse_duration_ms(text) == pytest.approx(ms)


@pytest.mark.parametrize("text", ["", "1.2", "ms", "1.2 ms", "-1ms", "1.2ns"])
def test_parse_duration_rejects_non_durations(text: str) -> None:
    with pytest.raises(WrkError):
        parse_duration_ms(text)


def test_parse_plain_report() -> None:
    parsed = parse_wrk_output(WRK_PLAIN)
    assert parsed == WrkResult(requests_per_s=52839.54, p50_ms=1.16, p99_ms=2.03,
                               requests=264211, socket_errors=0, non_2xx=0)


def test_parse_errors_and_mixed_units() -> None:
    parsed = parse_wrk_output(WRK_ERRORS)
    assert parsed.requests_per_s == pytest.approx(19998.12)
    assert parsed.p50_ms == pytest.approx(0.64)
    assert parsed.p99_ms == pytest.approx(1500.0)
    assert parsed.socket_errors == 17
    assert parsed.non_2xx == 41
    assert parsed.requests == 60000


def test_pipelined_report_drops_percentiles() -> None:
    parsed = parse_wrk_output(WRK_PIPELINED, pipelined=True)
    assert parsed.requests_per_s == pytest.approx(30266.87)
    assert parsed.p50_ms is None and parsed.p99_ms is None


def test_report_without_latency_section_has_no_percentiles() -> None:
    text = WRK_PLAIN.split("  Latency Distribution")[0] + WRK_PLAIN.split("99%    2.03ms\n")[1]
    parsed = parse_wrk_output(text)
    assert parsed.requests_per_s == pytest.approx(52839.54)
    assert parsed.p50_ms is None and parsed.p99_ms is None


def test_garbage_is_an_error() -> None:
    with pytest.raises(WrkError, match="Requests/sec"):
        parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_wrk_command_pinned_with_script() -> None:
    argv = wrk_command("http://127.0.0.1:9/x", connections=64, duration_s=5.0, cpu=1,
                       script=Path("bench/pipeline.lua"), script_args=("16",))
    assert argv == ["taskset", "-c", "1", "wrk", "-t1", "-c64", "-d5s", "--latency",
                    "-s", "bench/pipeline.lua", "http://127.0.0.1:9/x", "--", "16"]


def test_wrk_command_unpinned_never_zero_seconds() -> None:
    argv = wrk_command("http://127.0.0.1:9/", connections=8, duration_s=0.2, cpu=None)
    assert argv == ["wrk", "-t1", "-c8", "-d1s", "--latency", "http://127.0.0.1:9/"]


# --- medians and ratios -----------------------------------------------------------


def test_median_ratio_spread() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([1.0, 2.0, 3.0, 10.0]) == 2.5
    assert median([]) is None
    assert ratio(130.0, 100.0) == pytest.approx(1.3)
    assert ratio(None, 100.0) is None
    assert ratio(1.0, None) is None
    assert ratio(1.0, 0.0) is None
    assert spread([90.0, 100.0, 110.0]) == pytest.approx(0.2)
    assert spread([100.0]) is None


def test_summarize_uses_medians_and_baseline() -> None:
    uvicorn = VariantRuns("uvicorn", "uvicorn",
                          runs=[result(100.0, 1.0, 4.0), result(90.0, 2.0, 5.0),
                                result(1000.0, 3.0, 6.0)])  # one wild run: the median ignores it
    steady = VariantRuns("steadyloop", "steadyloop",
                         runs=[result(140.0, 0.5, 3.0), result(130.0, 0.7, 2.0),
                               result(120.0, 0.9, 1.0)])
    by_key = {s.key: s for s in summarize([steady, uvicorn], baseline="uvicorn")}
    assert by_key["uvicorn"].rps == 100.0
    assert by_key["uvicorn"].ratio == pytest.approx(1.0)
    assert by_key["steadyloop"].rps == 130.0
    assert by_key["steadyloop"].ratio == pytest.approx(1.3)
    assert by_key["steadyloop"].p50_ms == pytest.approx(0.7)
    assert by_key["steadyloop"].p99_ms == pytest.approx(2.0)
    assert by_key["steadyloop"].runs == 3
    assert by_key["steadyloop"].notes == ()


def test_summarize_without_baseline_or_runs() -> None:
    skipped = VariantRuns("steadyloop", "steadyloop", skipped="did not start: exited with 1")
    granian = VariantRuns("granian", "granian", runs=[result(50.0)])
    by_key = {s.key: s for s in summarize([skipped, granian], baseline="uvicorn")}
    assert by_key["granian"].ratio is None  # the baseline was not selected
    assert by_key["steadyloop"].rps is None
    assert by_key["steadyloop"].notes == ("skipped: did not start: exited with 1",)


def test_errors_become_notes() -> None:
    noisy = VariantRuns("uvicorn", "uvicorn",
                        runs=[result(10.0, non_2xx=5, socket_errors=1), result(10.0, non_2xx=2)],
                        failures=["wrk exited with 1: boom"])
    (summary,) = summarize([noisy], baseline="uvicorn")
    assert summary.notes == ("1 failed run(s): wrk exited with 1: boom", "7 non-2xx responses",
                             "1 socket errors")


def test_one_line_keeps_tables_intact() -> None:
    reason = "exited with 1: Traceback (most recent call last):\n  File x\nImportError: no | way"
    assert one_line(reason) == "exited with 1: Traceback (most recent call last): ... " \
                               "ImportError: no / way"
    assert len(one_line("x" * 500)) == 160
    assert one_line("\n\n") == ""


# --- rendering -----------------------------------------------------------------------


META = {
    "date": "2025-01-02T03:04:05+00:00",
    "command": ".venv/bin/python bench/run.py --runs 3 --duration 5",
    "machine": "Test CPU, 2 CPUs",
    "versions": "uvicorn 0.30",
    "runs": 3,
    "duration_s": 5.0,
    "warmup_s": 1.0,
    "pinning": "Servers pinned to CPU 0",
    "load_start": "0.10 0.20 0.30",
    "load_end": "0.40 0.50 0.60",
}


def _cases() -> list[CaseResult]:
    a64 = CaseResult("a64", "raw ASGI hello world, 64 connections", "uvicorn", True, [
        VariantRuns("steadyloop", "steadyloop", runs=[result(70_000.0, 0.8, 1.5)] * 3),
        VariantRuns("uvicorn", "uvicorn", runs=[result(50_000.0, 1.1, 2.0)] * 3),
        VariantRuns("granian", "granian", skipped="granian is not installed"),
    ])
    e = CaseResult("e", "2 workers, nothing pinned", "uvicorn", False, [
        VariantRuns("uvicorn", "uvicorn", runs=[result(80_000.0)]),
    ])
    g = CaseResult("g", "watchdog overhead", "steadyloop-nowd", True, [
        VariantRuns("steadyloop", "steadyloop", runs=[result(98.0)]),
        VariantRuns("steadyloop-nowd", "steadyloop --block-threshold 0", runs=[result(100.0)]),
    ])
    return [a64, e, g]


def test_markdown_has_date_command_and_rows() -> None:
    text = render_markdown(META, _cases())
    assert text.startswith("# steadyloop benchmark, 2025-01-02T03:04:05+00:00\n")
    assert "`.venv/bin/python bench/run.py --runs 3 --duration 5`" in text
    assert "| **a64** raw ASGI hello world, 64 connections | steadyloop | 70,000 | 0% " \
           "| 800 µs | 1.50 ms | 1.40x |  |" in text
    assert "|  | uvicorn | 50,000 | 0% | 1.10 ms | 2.00 ms | baseline |  |" in text
    assert "|  | granian | — | — | — | — | — | skipped: granian is not installed |" in text
    # Every table row has the same number of cells as the header.
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert len({row.count("|") for row in rows}) == 1


def test_markdown_checks_the_bars() -> None:
    lines = bars(_cases())
    assert lines[0].startswith("a64: steadyloop 1.40x uvicorn's requests/s (bar: at least 1.50x)")
    assert lines[0].endswith(": NOT met")
    assert lines[1] == "g: watchdog overhead 2.0% of requests/s (bar: within 3%): met"
    assert "## Against the bars" in render_markdown(META, _cases())
    assert "smoke test" not in render_markdown(META, _cases())
    assert "smoke test" in render_markdown({**META, "runs": 1}, _cases())
    assert "1 run per case" in render_markdown({**META, "runs": 1}, _cases())


def test_bar_not_met_when_p99_worse() -> None:
    case = CaseResult("a64", "hello", "uvicorn", True, [
        VariantRuns("steadyloop", "steadyloop", runs=[result(70_000.0, 0.8, 9.0)]),
        VariantRuns("uvicorn", "uvicorn", runs=[result(50_000.0, 1.1, 2.0)]),
    ])
    (line,) = bars([case])
    assert "WORSE" in line and line.endswith("NOT met")


def _pair(key: str, peer: str, ours: float, theirs: float, baseline: str = "") -> CaseResult:
    return CaseResult(key, key, baseline or peer, True, [
        VariantRuns("steadyloop", "steadyloop", runs=[result(ours)]),
        VariantRuns(peer, peer, runs=[result(theirs)]),
    ])


def test_issue_13_bars_compare_with_granian_and_with_a64() -> None:
    cases = [
        _pair("a64", "uvicorn", 90_000.0, 50_000.0),
        # a256 beats granian but drops from a64: not met.
        CaseResult("a256", "a256", "uvicorn", True, [
            VariantRuns("steadyloop", "steadyloop", runs=[result(80_000.0)]),
            VariantRuns("uvicorn", "uvicorn", runs=[result(40_000.0)]),
            VariantRuns("granian", "granian", runs=[result(79_000.0)]),
        ]),
        _pair("d", "granian", 100_000.0, 100_000.0, baseline="uvicorn"),
        _pair("f", "granian", 49_000.0, 100_000.0, baseline="gunicorn"),
        CaseResult("h2c", "h2c", "hypercorn", True, [
            VariantRuns("steadyloop", "steadyloop", runs=[result(3_000.0)]),
            VariantRuns("hypercorn", "hypercorn", runs=[result(1_000.0)]),
            VariantRuns("granian", "granian", runs=[result(20_000.0)]),
        ]),
    ]
    by_case = {line.split(":")[0]: line for line in bars(cases)}
    assert by_case["a64"].endswith("(bar: at least 1.50x), p99 2.00 ms vs 2.00 ms (no worse): met")
    assert by_case["a256"] == (
        "a256: steadyloop 1.01x granian's requests/s (bar: at least 1.00x), "
        "0.89x its own a64 figure (bar: no drop): NOT met"
    )
    assert by_case["d"].startswith("d: steadyloop 1.00x granian's")
    assert by_case["d"].endswith(": met")
    assert by_case["f"].endswith("(bar: at least 0.50x): NOT met")
    assert by_case["h2c"] == (
        "h2c: steadyloop 3.00x hypercorn's requests/s over h2c "
        "(bar: at least 3.00x; granian 20.00x): met"
    )


def test_text_table_aligns_and_marks_unpinned() -> None:
    a64, e, _ = _cases()
    text = render_text(a64)
    lines = text.splitlines()
    assert lines[0].startswith("== a64: raw ASGI hello world, 64 connections")
    assert lines[1].split() == ["server", "req/s", "spread", "p50", "p99", "ratio", "notes"]
    # Columns line up: "req/s" starts at the same offset in the header and the rows.
    offset = lines[1].index("req/s")
    assert lines[2][offset:].startswith("70,000")
    assert "unpinned" in render_text(e).splitlines()[0]


# --- selection, cases and command lines ------------------------------------------------


def test_select() -> None:
    known = ("a64", "a256", "b")
    assert select("all", known, "case") == ["a64", "a256", "b"]
    assert select("b, a64,b", known, "case") == ["b", "a64"]
    with pytest.raises(ValueError, match="zz"):
        select("a64,zz", known, "case")
    with pytest.raises(ValueError):
        select(",", known, "case")


def test_every_case_is_consistent() -> None:
    for case in CASES.values():
        assert case.baseline in case.variants, case.key
        assert all(v in VARIANTS for v in case.variants), case.key
        assert hasattr(apps, case.app) or case.app == "fastapi_app", case.key
        for variant in case.variants:
            argv = server_argv(variant, case, "127.0.0.1", 8123, ("c.pem", "k.pem"))
            assert case.target in argv
            assert "8123" in " ".join(argv)


def test_case_checks_accept_the_apps_bodies() -> None:
    assert CASES["a64"].check(apps.HELLO_BODY)
    assert not CASES["a64"].check(b"Hello")
    assert CASES["b"].check(b"x" * 10240)
    assert CASES["c"].check(b'{"message":"Hello, world!","id":42,"tags":["a","b","c"]}')
    assert not CASES["c"].check(b"not json")


def test_command_lines() -> None:
    a64, e, f, g = CASES["a64"], CASES["e"], CASES["f"], CASES["g"]
    uvicorn = server_argv("uvicorn", a64, "127.0.0.1", 9000)
    assert uvicorn[1:] == ["-m", "uvicorn", "bench.apps:hello", "--host", "127.0.0.1",
                           "--port", "9000", "--loop", "uvloop", "--http", "httptools",
                           "--no-access-log", "--log-level", "warning"]
    assert server_argv("uvicorn", e, "127.0.0.1", 9000)[-2:] == ["--workers", "2"]
    steady = server_argv("steadyloop", f, "127.0.0.1", 9000)
    assert steady[1:4] == ["-m", "steadyloop", "bench.apps:wsgi_hello"]
    assert steady[-2:] == ["--interface", "wsgi"]
    assert server_argv("steadyloop-nowd", g, "127.0.0.1", 9000)[-2:] == ["--block-threshold", "0"]
    assert "--block-threshold" not in server_argv("steadyloop", g, "127.0.0.1", 9000)
    granian = server_argv("granian", f, "127.0.0.1", 9000)
    assert granian[granian.index("--interface") + 1] == "wsgi"
    assert "--http1-pipeline-flush" in server_argv("granian", CASES["d"], "127.0.0.1", 9000)
    assert "--http1-pipeline-flush" not in server_argv("granian", a64, "127.0.0.1", 9000)
    gunicorn = server_argv("gunicorn", CASES["f10k"], "127.0.0.1", 9000)
    assert gunicorn[1:3] == ["-k", "gthread"]
    assert "127.0.0.1:9000" in gunicorn
    with pytest.raises(ValueError):
        server_argv("gunicorn", a64, "127.0.0.1", 9000)


def test_tls_and_h2c_command_lines() -> None:
    tls, h2c = CASES["tls"], CASES["h2c"]
    certs = ("/tmp/c.pem", "/tmp/k.pem")
    with pytest.raises(ValueError, match="certificate"):
        server_argv("uvicorn", tls, "127.0.0.1", 9000)
    for variant, cert_flag in (("steadyloop", "--ssl-certfile"), ("uvicorn", "--ssl-certfile"),
                               ("granian", "--ssl-certificate")):
        argv = server_argv(variant, tls, "127.0.0.1", 9000, certs)
        assert argv[argv.index(cert_flag) + 1] == "/tmp/c.pem"
        assert argv[argv.index("--ssl-keyfile") + 1] == "/tmp/k.pem"
    granian = server_argv("granian", h2c, "127.0.0.1", 9000)
    assert granian[granian.index("--http") + 1] == "2"
    hypercorn = server_argv("hypercorn", h2c, "127.0.0.1", 9000)
    assert "127.0.0.1:9000" in hypercorn and hypercorn[-1] == "bench.apps:hello"
    assert h2load_command("http://h/", connections=16, streams=8, duration_s=3, cpu=1) == [
        "taskset", "-c", "1", "h2load", "-t", "1", "-c", "16", "-m", "8", "-D", "3", "http://h/"]


H2LOAD_REPORT = """starting benchmark...
finished in 3.00s, 2640.33 req/s, 118.20KB/s
requests: 7921 total, 8049 started, 7921 done, 7900 succeeded, 21 failed, 2 errored, 1 timeout
status codes: 7900 2xx, 0 3xx, 21 4xx, 0 5xx
"""


def test_parse_h2load_report() -> None:
    result = parse_h2load_output(H2LOAD_REPORT)
    assert result.requests_per_s == 2640.33
    assert (result.requests, result.non_2xx, result.socket_errors) == (7921, 21, 3)
    assert result.p99_ms is None
    with pytest.raises(WrkError):
        parse_h2load_output("h2load: connection refused")
