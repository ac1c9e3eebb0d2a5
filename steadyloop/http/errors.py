"""Errors of the HTTP layer.

ProtocolError                the peer broke HTTP/1.1; carries the status to answer with
└── (raised by RequestParser with status 400, 413, 414, 417, 431, 501 or 505)
ResponseError                the app asked for a response we refuse to write (bad header, ...)
"""

from __future__ import annotations


class ProtocolError(Exception):
    """The client sent something we refuse. `status` is what to answer with before closing."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ResponseError(Exception):
    """The application's response cannot be written as given (the app's fault, so a 500)."""
