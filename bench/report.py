"""From raw wrk runs to medians, ratios, a console table and a markdown report.

Everything here is pure: no processes, no clock, no files.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.wrk import WrkResult


@dataclass
class VariantRuns:
    """Everything measured for one server variant in one case."""

    key: str
    label: str
    command: list[str] = field(default_factory=list)
    runs: list[WrkResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # runs that gave no numbers, and why
    skipped: str | None = None  # why the variant was not measured at all


@dataclass(frozen=True)
class Summary:
    key: str
    label: str
    runs: int
    rps: float | None  # median requests/s
    spread: float | None  # (max - min) / median of requests/s, as a fraction
    p50_ms: float | None  # medians of the runs' p50 and p99
    p99_ms: float | None
    ratio: float | None  # rps / the baseline's rps
    notes: tuple[str, ...]


@dataclass
class CaseResult:
    key: str
    title: str
    baseline: str
    pinned: bool
    variants: list[VariantRuns]

    def summaries(self) -> list[Summary]:
        return summarize(self.variants, self.baseline)


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None or baseline <= 0:
        return None
    return value / baseline


def spread(values: Sequence[float]) -> float | None:
    mid = median(values)
    if mid is None or mid <= 0 or len(values) < 2:
        return None
    return (max(values) - min(values)) / mid


def one_line(text: str, limit: int = 160) -> str:
    """Multi-line reasons (a server's last log lines) made fit for a table cell:
    the first line says what happened, the last one usually says why."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    short = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    short = short.replace("|", "/")
    return short if len(short) <= limit else short[: limit - 3] + "..."


def _notes(variant: VariantRuns) -> tuple[str, ...]:
    notes: list[str] = []
    if variant.skipped is not None:
        notes.append(f"skipped: {one_line(variant.skipped)}")
    if variant.failures:
        notes.append(f"{len(variant.failures)} failed run(s): {one_line(variant.failures[-1])}")
    non_2xx = sum(run.non_2xx for run in variant.runs)
    if non_2xx:
        notes.append(f"{non_2xx} non-2xx responses")
    socket_errors = sum(run.socket_errors for run in variant.runs)
    if socket_errors:
        notes.append(f"{socket_errors} socket errors")
    return tuple(notes)


def summarize(variants: Sequence[VariantRuns], baseline: str) -> list[Summary]:
    rps_by_key = {v.key: median([r.requests_per_s for r in v.runs]) for v in variants}
    base = rps_by_key.get(baseline)
    summaries = []
    for v in variants:
        p50s = [r.p50_ms for r in v.runs if r.p50_ms is not None]
        p99s = [r.p99_ms for r in v.runs if r.p99_ms is not None]
        summaries.append(Summary(
            key=v.key,
            label=v.label,
            runs=len(v.runs),
            rps=rps_by_key[v.key],
            spread=spread([r.requests_per_s for r in v.runs]),
            p50_ms=median(p50s),
            p99_ms=median(p99s),
            ratio=ratio(rps_by_key[v.key], base),
            notes=_notes(v),
        ))
    return summaries


def fmt_rps(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value * 1000:.0f} µs" if value < 1 else f"{value:.2f} ms"


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def fmt_spread(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


def _label(case: CaseResult, key: str) -> str:
    for v in case.variants:
        if v.key == key:
            return v.label
    return key


def render_text(case: CaseResult) -> str:
    """A plain aligned table for the terminal."""
    header = ("server", "req/s", "spread", "p50", "p99", "ratio", "notes")
    rows = [header] + [
        (s.label, fmt_rps(s.rps), fmt_spread(s.spread), fmt_ms(s.p50_ms), fmt_ms(s.p99_ms),
         fmt_ratio(s.ratio), "; ".join(s.notes))
        for s in case.summaries()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    unpinned = "" if case.pinned else "  [wrk and servers unpinned]"
    lines = [f"== {case.key}: {case.title}{unpinned}; ratio = requests/s over "
             f"{_label(case, case.baseline)}'s"]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def render_markdown(meta: dict[str, Any], cases: Sequence[CaseResult]) -> str:
    lines = [
        f"# steadyloop benchmark, {meta['date']}",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Machine: {meta['machine']}. Load average at start {meta['load_start']}, "
        f"at end {meta['load_end']}.",
        "",
        f"Versions: {meta['versions']}.",
        "",
        f"{meta['runs']} run{'' if meta['runs'] == 1 else 's'} per case of "
        f"{meta['duration_s']:g} s each (after a "
        f"{meta['warmup_s']:g} s warm-up per server start), servers run alternately. "
        f"{meta['pinning']}. Numbers are medians over the runs; *spread* is "
        "(max - min) / median of requests/s; *ratio* is the median requests/s over "
        "that of the case's baseline row. "
        "This machine is shared and noisy: read the ratios, not the absolute numbers.",
        "",
        "| case | server | requests/s | spread | p50 | p99 | ratio | notes |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for case in cases:
        for index, s in enumerate(case.summaries()):
            # The case is named on its first row only, so each case reads as a block.
            case_cell = f"**{case.key}** {case.title}" if index == 0 else ""
            ratio_cell = "baseline" if s.key == case.baseline else fmt_ratio(s.ratio)
            lines.append(
                f"| {case_cell} | {s.label} | {fmt_rps(s.rps)} | {fmt_spread(s.spread)} "
                f"| {fmt_ms(s.p50_ms)} | {fmt_ms(s.p99_ms)} | {ratio_cell} "
                f"| {'; '.join(s.notes)} |"
            )
    bar_lines = bars(cases)
    if bar_lines:
        lines += ["", "## Against the bars", ""]
        if meta["runs"] < 3:
            lines += [f"Only {meta['runs']} run(s) per case: a smoke test, not a verdict.", ""]
        lines += [f"- {line}" for line in bar_lines]
    return "\n".join(lines) + "\n"


def _summary(cases: Sequence[CaseResult], case_key: str, variant: str) -> Summary | None:
    for case in cases:
        if case.key == case_key:
            for s in case.summaries():
                if s.key == variant:
                    return s
    return None


def _versus(cases: Sequence[CaseResult], case_key: str, peer: str) -> float | None:
    """steadyloop's median requests/s over `peer`'s in one case (None when either is missing)."""
    ours, theirs = _summary(cases, case_key, "steadyloop"), _summary(cases, case_key, peer)
    if ours is None or theirs is None:
        return None
    return ratio(ours.rps, theirs.rps)


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


# (case, peer, the least steadyloop/peer requests/s ratio, what is measured): the bars that
# issues 2, 9, 10 and 13 set, where one ratio is the whole verdict.
RATIO_BARS = (
    ("c", "uvicorn", 1.15, "uvicorn's requests/s on FastAPI"),
    ("d", "granian", 1.0, "granian's (--http1-pipeline-flush) requests/s, 16-deep pipelining"),
    ("f", "granian", 0.5, "granian's requests/s on WSGI"),
    ("tls", "uvicorn", 1.2, "uvicorn's requests/s over HTTPS"),
    ("h2c", "hypercorn", 3.0, "hypercorn's requests/s over h2c"),
    ("ws", "uvicorn", 1.3, "uvicorn's WebSocket messages/s"),
)


def bars(cases: Sequence[CaseResult]) -> list[str]:
    """The targets the issues set, checked against this run's medians."""
    out = []
    a64 = _summary(cases, "a64", "steadyloop")
    a64_base = _summary(cases, "a64", "uvicorn")
    a64_ratio = _versus(cases, "a64", "uvicorn")
    if a64 is not None and a64_base is not None and a64_ratio is not None:
        p99_ok = (a64.p99_ms is not None and a64_base.p99_ms is not None
                  and a64.p99_ms <= a64_base.p99_ms)
        out.append(
            f"a64: steadyloop {fmt_ratio(a64_ratio)} uvicorn's requests/s (bar: at least 1.50x), "
            f"p99 {fmt_ms(a64.p99_ms)} vs {fmt_ms(a64_base.p99_ms)} "
            f"({'no worse' if p99_ok else 'WORSE'}): {_verdict(a64_ratio >= 1.5 and p99_ok)}"
        )
    a256 = _summary(cases, "a256", "steadyloop")
    a256_ratio = _versus(cases, "a256", "granian")
    if a256 is not None and a256_ratio is not None:
        line = f"a256: steadyloop {fmt_ratio(a256_ratio)} granian's requests/s (bar: at least 1.00x)"
        ok = a256_ratio >= 1.0
        kept = None if a64 is None else ratio(a256.rps, a64.rps)
        if kept is not None:
            line += f", {fmt_ratio(kept)} its own a64 figure (bar: no drop)"
            ok = ok and kept >= 1.0
        out.append(f"{line}: {_verdict(ok)}")
    for key, peer, least, what in RATIO_BARS:
        versus = _versus(cases, key, peer)
        if versus is None:
            continue
        where = ""
        granian, baseline = _summary(cases, key, "granian"), _summary(cases, key, peer)
        if peer != "granian" and granian is not None and baseline is not None:
            granian_ratio = ratio(granian.rps, baseline.rps)
            where = "" if granian_ratio is None else f"; granian {fmt_ratio(granian_ratio)}"
        out.append(f"{key}: steadyloop {fmt_ratio(versus)} {what} "
                   f"(bar: at least {least:.2f}x{where}): {_verdict(versus >= least)}")
    g = _summary(cases, "g", "steadyloop")
    if g is not None and g.ratio is not None:
        overhead = 1 - g.ratio
        out.append(f"g: watchdog overhead {overhead * 100:.1f}% of requests/s "
                   f"(bar: within 3%): {_verdict(overhead <= 0.03)}")
    return out


def to_json(meta: dict[str, Any], cases: Sequence[CaseResult]) -> dict[str, Any]:
    return {
        "meta": meta,
        "cases": [
            {
                "key": case.key,
                "title": case.title,
                "baseline": case.baseline,
                "pinned": case.pinned,
                "variants": [asdict(v) for v in case.variants],
                "summaries": [asdict(s) for s in case.summaries()],
            }
            for case in cases
        ],
    }
