"""Helpers shared by the WSGI tests."""

from __future__ import annotations

import logging


class Records(logging.Handler):
    """Collects records of one logger, whatever handlers and propagation others set up."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.logger = logging.getLogger(name)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> Records:
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]
