"""Answers the server makes itself (refusals, 500s) carry Date and Server like any other.

"An origin server with a clock MUST generate a Date header field in all 2xx (Successful),
3xx (Redirection), and 4xx (Client Error) responses, and MAY generate a Date header field
in 1xx (Informational) and 5xx (Server Error) responses." -- RFC 9110 §6.6.1
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime

from tests.apps.basic import echo
from tests.conftest import running_server
from tests.rawhttp import RawClient


def _refusal(data: bytes, **options: object) -> tuple[int, dict[bytes, bytes]]:
    with running_server(echo, **options) as server, RawClient.connect(server.port) as client:
        client.send(data)
        response = client.response()
        client.assert_closed()
        return response.status, dict(response.headers)


def test_refusal_has_date_and_server_headers() -> None:
    status, headers = _refusal(b"BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n")
    assert status == 501
    assert parsedate_to_datetime(headers[b"date"].decode()).tzinfo is not None
    assert headers[b"server"] == b"steadyloop"
    assert headers[b"connection"] == b"close"


def test_refusal_honours_no_server_header_and_extra_headers() -> None:
    status, headers = _refusal(b"GET / HTTP/1.1\r\n\r\n", server_header=False, header=[("X-Site", "blue")])
    assert status == 400
    assert b"server" not in headers
    assert headers[b"x-site"] == b"blue"
    assert b"date" in headers
