"""wsgi.errors: a text stream whose lines go to the "steadyloop.wsgi" logger.

Writing to stderr directly would block the app's thread whenever stderr is a
full pipe; through logging the line joins the non-blocking log pipeline like
every other record. One record per complete line; `flush()` emits a partial one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

logger = logging.getLogger("steadyloop.wsgi")


class ErrorStream:
    # A class default, no __init__: one is made per request and most are never written to.
    _partial = ""

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"wsgi.errors takes str, not {type(text).__name__}")
        data = self._partial + text
        *lines, self._partial = data.split("\n")
        for line in lines:
            logger.error("%s", line)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._partial:
            line, self._partial = self._partial, ""
            logger.error("%s", line)
