"""From the workers' snapshots to Prometheus families (via prometheus_client) and status JSON.

`ServerView` is what a scrape sees: every worker label with its live snapshot
(if a worker holds the label now) and the retired counters of the label's
earlier workers, plus what only the supervisor knows (ready workers, restarts
by reason). `render(view, accept)` negotiates the format with
prometheus_client's own encoder choice: OpenMetrics when the scraper asks
for it, the classic text format otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry

from steadyloop.observe.metrics.totals import add, add_all

RESTART_REASONS = ("crashed", "stuck_loop", "max_requests", "reload")
MAX_LOCATIONS = 32  # per worker label, after adding up retired workers; the rest are "other"


@dataclass
class WorkerView:
    label: str  # "0", "1", ...: a slot, reused by a worker's replacement
    snapshot: dict[str, Any] | None  # the live worker's latest; None if no worker holds the label
    retired: dict[str, Any] = field(default_factory=dict)  # counters of its earlier holders

    @property
    def counters(self) -> dict[str, Any]:
        live = self.snapshot["counters"] if self.snapshot is not None else {}
        result: dict[str, Any] = add(self.retired, live)
        return result

    @property
    def gauges(self) -> dict[str, Any]:
        return self.snapshot["gauges"] if self.snapshot is not None else {}


@dataclass
class ServerView:
    workers: list[WorkerView]
    ready_workers: int
    restarts: dict[str, int] = field(default_factory=dict)

    def status(self) -> dict[str, Any]:
        """The status page's JSON: live workers with their snapshots, and the totals."""
        return {
            "ready_workers": self.ready_workers,
            "restarts": {reason: self.restarts.get(reason, 0) for reason in RESTART_REASONS},
            "workers": [{"label": w.label, **w.snapshot} for w in self.workers if w.snapshot is not None],
        }


def render(view: ServerView, accept: str) -> tuple[bytes, str]:
    """The exposition body and its content type, in the format `accept` asks for."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(view))
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


class _Families(Collector):
    def __init__(self, view: ServerView) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        view = self.view
        counters = {w.label: w.counters for w in view.workers}
        yield from _requests(add_all(list(counters.values())))
        yield from _workers(view)
        yield from _loop(counters, view)
        yield from _pools(counters, view)
        yield from _logs(counters, view)


def _requests(total: dict[str, Any]) -> Iterator[Metric]:
    requests = CounterMetricFamily(
        "steadyloop_requests",
        "Responses completed, by status class and protocol.",
        labels=["status_class", "protocol"],
    )
    for protocol, by_class in sorted(total.get("requests", {}).items()):
        for status_class, n in sorted(by_class.items()):
            requests.add_metric([status_class, protocol], n)
    yield requests
    duration = HistogramMetricFamily(
        "steadyloop_request_duration_seconds",
        "Time from a request's head to the end of its response, in seconds.",
        labels=[],
    )
    if "duration" in total:
        duration.add_metric([], _buckets(total["duration"]), total["duration"]["sum"])
    yield duration


def _workers(view: ServerView) -> Iterator[Metric]:
    yield GaugeMetricFamily("steadyloop_workers", "Worker processes ready to serve.", view.ready_workers)
    restarts = CounterMetricFamily(
        "steadyloop_worker_restarts",
        "Workers replaced, by reason: crashed, stuck_loop (--worker-timeout), max_requests, reload.",
        labels=["reason"],
    )
    for reason in RESTART_REASONS:
        restarts.add_metric([reason], view.restarts.get(reason, 0))
    yield restarts
    connections = GaugeMetricFamily(
        "steadyloop_connections",
        "Open client connections, by state: active (a request in flight), idle, closing.",
        labels=["worker", "state"],
    )
    for w in view.workers:
        for state, n in sorted(w.gauges.get("connections", {}).items()):
            connections.add_metric([w.label, state], n)
    yield connections


def _loop(counters: dict[str, dict[str, Any]], view: ServerView) -> Iterator[Metric]:
    lag = HistogramMetricFamily(
        "steadyloop_loop_lag_seconds",
        "How late the event loop ran its own heartbeat timer, in seconds.",
        labels=["worker"],
    )
    blocks = CounterMetricFamily(
        "steadyloop_loop_blocks",
        "Event-loop blocks longer than --block-threshold, by the app's file:line that held it.",
        labels=["worker", "location"],
    )
    blocked = CounterMetricFamily(
        "steadyloop_loop_blocked_seconds",
        "Seconds the event loop spent blocked (blocks longer than --block-threshold).",
        labels=["worker"],
    )
    blocked_now = GaugeMetricFamily(
        "steadyloop_loop_blocked_now_seconds",
        "How long the event loop has been blocked so far, if it is blocked now; else 0.",
        labels=["worker"],
    )
    for label, c in counters.items():
        if "lag" in c:
            lag.add_metric([label], _buckets(c["lag"]), c["lag"]["sum"])
        if "blocks" in c:
            for location, (n, _) in _bounded(c["blocks"].get("locations", {})):
                blocks.add_metric([label, location], n)
            blocked.add_metric([label], c["blocks"].get("seconds", 0.0))
    for w in view.workers:
        if w.snapshot is not None:
            now = w.snapshot["live"].get("blocked_now")
            blocked_now.add_metric([w.label], now["seconds"] if now else 0.0)
    yield from (lag, blocks, blocked, blocked_now)


def _pools(counters: dict[str, dict[str, Any]], view: ServerView) -> Iterator[Metric]:
    labels = ["worker", "pool"]
    gauges = {
        key: GaugeMetricFamily(f"steadyloop_threadpool_{key}", text, labels=labels)
        for key, text in (
            ("busy", "Threads of the pool running a task now."),
            ("queued", "Tasks waiting for a thread of the pool now."),
            ("size", "Threads in the pool (--threads)."),
        )
    }
    for w in view.workers:
        for pool, numbers in sorted(w.gauges.get("pools", {}).items()):
            for key, family in gauges.items():
                family.add_metric([w.label, pool], numbers[key])
    wait = HistogramMetricFamily(
        "steadyloop_threadpool_wait_seconds",
        "How long tasks waited in the pool's queue for a thread, in seconds.",
        labels=labels,
    )
    for label, c in counters.items():
        for pool, hist in sorted(c.get("pool_waits", {}).items()):
            wait.add_metric([label, pool], _buckets(hist), hist["sum"])
    yield from (*gauges.values(), wait)


def _logs(counters: dict[str, dict[str, Any]], view: ServerView) -> Iterator[Metric]:
    dropped = CounterMetricFamily(
        "steadyloop_log_records_dropped",
        "Log records dropped because the log queue was full (the sink was too slow), by level.",
        labels=["worker", "level"],
    )
    lost = CounterMetricFamily(
        "steadyloop_log_records_lost",
        "Log records accepted but never written (write errors, the shutdown deadline).",
        labels=["worker"],
    )
    queued = GaugeMetricFamily(
        "steadyloop_log_queue_records",
        "Log records waiting in the queue for the writer thread.",
        labels=["worker"],
    )
    for label, c in counters.items():
        log = c.get("log", {})
        for level, n in sorted(log.get("dropped", {}).items()):
            dropped.add_metric([label, level], n)
        lost.add_metric([label], log.get("lost", 0))
    for w in view.workers:
        if w.snapshot is not None:
            queued.add_metric([w.label], w.gauges.get("log_queue", 0))
    yield from (dropped, lost, queued)


def _buckets(hist: dict[str, Any]) -> list[tuple[str, float]]:
    bounds = [*(repr(float(b)) for b in hist["le"]), "+Inf"]
    return list(zip(bounds, hist["cum"], strict=True))


def _bounded(locations: dict[str, list[float]]) -> list[tuple[str, list[float]]]:
    """At most MAX_LOCATIONS label values: the most frequent, and "other" for the rest."""
    ranked = sorted(locations.items(), key=lambda item: (-item[1][0], item[0]))
    if len(ranked) <= MAX_LOCATIONS:
        return ranked
    kept = [(k, v) for k, v in ranked[: MAX_LOCATIONS - 1] if k != "other"]
    rest = [v for k, v in ranked if (k, v) not in kept]
    other = [sum(v[0] for v in rest), sum(v[1] for v in rest)]
    return [*kept, ("other", other)]
