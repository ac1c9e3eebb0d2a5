"""The status page in a real browser: headless Chromium (the system's) driven by Playwright.

The page is opened first; then the app blocks its loop; the block's file:line must
appear on the page by itself (the page polls /status.json), without a reload, and
its sampled stack must open on a tap. The page is phone-sized and may fetch nothing
but its own origin.
"""

from __future__ import annotations

import os
import shutil
import threading

import httpx
import pytest
from apps.metrics_support import BLOCK_LOCATION, metrics_server

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs the system chromium")
# Set to a path to write the screenshot docs/status-page.png is made from.
SCREENSHOT = os.environ.get("STEADYLOOP_STATUS_SCREENSHOT")


def test_a_block_shows_up_on_the_open_page_with_its_line_and_stack() -> None:
    with (
        metrics_server("--block-threshold", "0.05", "--threads", "1") as server,
        sync_api.sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
            fetched: list[str] = []
            page.on("request", lambda request: fetched.append(request.url))
            page.goto(server.metrics_url + "/")
            page.wait_for_selector("section.card[data-worker='1']")
            assert page.locator("section.card").count() == 2
            page.evaluate("window.stillTheSamePage = true")
            assert BLOCK_LOCATION not in page.inner_text("body")

            load = threading.Thread(target=_traffic, args=(server.url,), daemon=True)
            load.start()
            page.wait_for_function(
                "where => document.body.innerText.includes(where)", arg=BLOCK_LOCATION, timeout=20_000
            )
            assert page.evaluate("window.stillTheSamePage") is True, "the page reloaded"
            # A tap on the block's line (dispatched to the element itself: the cards above it
            # may shift as the "blocked now" banner goes, and a click by position would miss).
            page.locator("summary", has_text=BLOCK_LOCATION).first.dispatch_event("click")
            page.get_by_text("in hold_the_loop").first.wait_for(state="visible", timeout=5_000)
            # It stays open across the next refreshes.
            page.wait_for_timeout(1500)
            assert page.get_by_text("in hold_the_loop").first.is_visible()
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            assert all(url.startswith(server.metrics_url + "/") for url in fetched), fetched
            load.join()
            if SCREENSHOT:
                busy = threading.Event()
                threading.Thread(target=_steady_traffic, args=(server.url, busy), daemon=True).start()
                desktop = browser.new_page(viewport={"width": 1280, "height": 900})
                desktop.goto(server.metrics_url + "/")
                desktop.wait_for_function(
                    "where => document.body.innerText.includes(where)", arg=BLOCK_LOCATION
                )
                desktop.locator("summary", has_text=BLOCK_LOCATION).first.dispatch_event("click")
                desktop.wait_for_timeout(2500)  # two polls: requests/s has a rate
                desktop.screenshot(path=SCREENSHOT, full_page=True)
                busy.set()
        finally:
            browser.close()


def _traffic(url: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(20):
            client.get("/")
        client.get("/pool")
        client.get("/block", params={"s": "0.4"})
        for _ in range(20):
            client.get("/")


def _steady_traffic(url: str, done: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        while not done.is_set():
            client.get("/")
