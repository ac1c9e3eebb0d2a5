"""The default format of every record the server prints, its own and the app's.

    [2026-12-01 08:24:24,549] [7451] [INFO] steadyloop 0.1.0 serving on http://127.0.0.1:8000 ...
    [2026-12-01 08:24:25,101] [7451] [WARNING] myapp.payments: card declined

The server's loggers ("steadyloop.*") print the message alone; any other
logger's record (the app's, a library's, reaching the fallback handler)
names its logger first. On a terminal the level is coloured, unless NO_COLOR
is set (https://no-color.org's convention) or --no-use-colors says otherwise;
--use-colors colours a pipe too.
"""

from __future__ import annotations

import logging
import os
from typing import Any

SERVER_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
RESET = "\x1b[0m"
LEVEL_COLOURS = {
    logging.DEBUG: "\x1b[36m",  # cyan
    logging.INFO: "\x1b[32m",  # green
    logging.WARNING: "\x1b[33m",  # yellow
    logging.ERROR: "\x1b[31m",  # red
    logging.CRITICAL: "\x1b[1;31m",  # bold red
}


def wants_colours(choice: bool | None, stream: Any) -> bool:
    """--use-colors / --no-use-colors if given; else a terminal, unless NO_COLOR is set."""
    if choice is not None:
        return choice
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class ServerFormatter(logging.Formatter):
    def __init__(self, colours: bool = False) -> None:
        super().__init__(SERVER_FORMAT)
        self.colours = colours

    def formatMessage(self, record: logging.LogRecord) -> str:
        level = record.levelname
        if self.colours:
            colour = LEVEL_COLOURS.get(record.levelno, "\x1b[2m")  # TRACE and the like: dim
            level = f"{colour}{level}{RESET}"
        message = record.message
        name = record.name
        if name != "steadyloop" and not name.startswith("steadyloop."):
            message = f"{name}: {message}"
        return f"[{record.asctime}] [{record.process}] [{level}] {message}"


def fallback_handler(colours: bool | None) -> logging.Handler:
    """What prints a record no handler took (logging.lastResort): stderr, WARNING and up,
    in the server's format instead of the bare message."""
    handler = logging.StreamHandler()  # sys.stderr, looked up when it writes
    handler.setLevel(logging.WARNING)
    handler.setFormatter(ServerFormatter(wants_colours(colours, handler.stream)))
    return handler
