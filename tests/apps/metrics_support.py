"""A --metrics server as a subprocess, and reading its /metrics, for the metrics tests."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import psutil
from apps.metrics_app import BLOCK_LINE
from apps.workers_support import LogTail
from conftest import free_port, spawn, stop, wait_until
from prometheus_client.parser import text_string_to_metric_families

APP = "apps.metrics_app:app"
BLOCK_LOCATION = f"tests/apps/metrics_app.py:{BLOCK_LINE}"


@dataclass
class Running:
    proc: subprocess.Popen[str]
    log: LogTail
    port: int
    metrics_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    def samples(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        text = httpx.get(self.metrics_url + "/metrics", timeout=10).text
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def total(self, name: str, **labels: str) -> float:
        """The sum of `name`'s samples whose labels include `labels` (over workers, say)."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples().items() if n == name and wanted <= ls)

    def workers(self) -> list[int]:
        return [p.pid for p in psutil.Process(self.proc.pid).children()]


@contextlib.contextmanager
def metrics_server(*args: str, workers: int = 2) -> Iterator[Running]:
    port, metrics_port = free_port(), free_port()
    argv = [APP, "--port", str(port), "--metrics", "--metrics-port", str(metrics_port), "--no-access-log"]
    if workers > 1:
        argv += ["--workers", str(workers)]
    # stdout is a pipe nobody reads: the app's log handler there stalls once it is full.
    with spawn([*argv, *args], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stderr is not None
        tail = LogTail(proc.stderr)
        running = Running(proc, tail, port, metrics_port)
        try:
            tail.wait_for(r"serving on http", timeout=20)
            if workers > 1:
                wait_until(lambda: running.total("steadyloop_workers") == workers, timeout=20)
            yield running
        finally:
            stop(proc, timeout=20)
            tail.join()
