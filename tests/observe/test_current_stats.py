"""steadyloop.observe.current_stats(): the public view of this process's numbers."""

from __future__ import annotations

import httpx
from apps.metrics_app import BLOCK_LINE
from apps.metrics_app import app as metrics_app
from conftest import running_server, wait_until

from steadyloop.observe import current_stats


def test_current_stats_sees_requests_blocks_and_pools_of_the_running_server() -> None:
    assert current_stats() is None  # no server in this process
    with running_server(metrics_app, metrics=True, metrics_port=0, block_threshold=0.05) as server:
        httpx.get(server.url + "/block", params={"s": "0.2"})
        httpx.get(server.url + "/missing")

        def seen() -> dict[str, object] | None:
            stats = current_stats()
            if stats and stats["counters"]["blocks"]["count"] >= 1:  # type: ignore[index]
                return stats
            return None

        stats = wait_until(seen)
        assert stats["counters"]["requests"] == {"HTTP/1.1": {"2xx": 1, "4xx": 1}}
        locations = stats["counters"]["blocks"]["locations"]
        assert locations[f"tests/apps/metrics_app.py:{BLOCK_LINE}"][0] == 1
        assert {"executor", "anyio"} <= set(stats["gauges"]["pools"])
        assert stats["gauges"]["connections"].keys() == {"active", "idle", "closing"}
