"""The young GC threshold is raised once the app is loaded (so the cost of a request does not
grow with open connections), unless the app chose its own thresholds."""

from __future__ import annotations

import subprocess

import httpx
from conftest import free_port, spawn


def _thresholds(*args: str) -> list[int]:
    port = free_port()
    with spawn([*args, "--port", str(port)], port=port, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        return list(httpx.get(f"http://127.0.0.1:{port}/").json())


def test_the_server_raises_the_young_threshold_tenfold() -> None:
    assert _thresholds("tests.apps.gc_apps:thresholds") == [7000, 10, 10]


def test_an_app_that_set_its_own_thresholds_keeps_them() -> None:
    assert _thresholds("tests.apps.gc_apps:tuned_by_the_app", "--factory") == [1234, 5, 5]
