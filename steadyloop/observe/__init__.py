"""Observability: non-blocking logging, access log, loop watchdog, counters.

This package is used by every other part of steadyloop and imports none of them.
"""

from typing import Any


def current_stats() -> dict[str, Any] | None:
    """This process's loop, pool, log and (with --metrics) request numbers now, or None when no server runs
    here. Safe from any thread (an app's health endpoint, a test); it never
    waits for the event loop. The shape is documented in docs/metrics.md."""
    from steadyloop.observe.metrics.process import current_stats as current

    return current()
