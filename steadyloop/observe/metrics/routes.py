"""What the metrics port answers: /metrics, / (the status page) and /status.json."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources

from steadyloop.observe.metrics.exposition import ServerView, render
from steadyloop.observe.metrics.listener import Handler, Request, Response

# The page ships inline: no CDN, no other file; it must work on an isolated host.
# Scripts and styles come only from the page itself, data only from this origin.
_PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'"
)


def status_page() -> bytes:
    return resources.files("steadyloop.observe.metrics").joinpath("status.html").read_bytes()


def make_handler(view: Callable[[], ServerView]) -> Handler:
    """A handler over `view`, called once per scrape or status poll."""
    page = status_page()

    def handle(request: Request) -> Response:
        if request.path == "/metrics":
            body, content_type = render(view(), request.headers.get("accept", ""))
            return Response(200, content_type, body)
        if request.path == "/status.json":
            body = json.dumps(view().status(), separators=(",", ":")).encode()
            return Response(200, "application/json", body)
        if request.path == "/":
            return Response(
                200, "text/html; charset=utf-8", page, (("content-security-policy", _PAGE_POLICY),)
            )
        return Response(404, "text/plain; charset=utf-8", b"not found: try /, /metrics or /status.json\n")

    return handle
