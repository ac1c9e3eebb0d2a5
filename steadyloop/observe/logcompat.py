"""uvicorn's --log-config files, carried over: its logger names become ours.

A uvicorn log config configures the loggers "uvicorn", "uvicorn.error" and
"uvicorn.access". steadyloop's records come from "steadyloop",
"steadyloop.error" and "steadyloop.access", so such a file would configure
loggers nobody logs to. Before the config is applied, those names are
renamed to ours (dictConfig's "loggers" keys, an INI file's `qualname`s),
and the caller says so once.

uvicorn's `AccessFormatter` unpacks a record's `args` as (client address,
method, path, HTTP version, status): when the file configured
"uvicorn.access", access records are made the way uvicorn makes them (see
`steadyloop.observe.access.AccessLog`), so its formatters and any format
written for them render as they did under uvicorn.
"""

from __future__ import annotations

import configparser
from typing import Any

UVICORN_NAMES = {
    "uvicorn": "steadyloop",
    "uvicorn.error": "steadyloop.error",
    "uvicorn.access": "steadyloop.access",
}


def rename_dict_loggers(config: dict[str, Any]) -> list[str]:
    """Rename uvicorn's loggers in a dictConfig, in place; returns the names renamed."""
    loggers = config.get("loggers")
    if not isinstance(loggers, dict):
        return []
    renamed = [name for name in UVICORN_NAMES if name in loggers and UVICORN_NAMES[name] not in loggers]
    for name in renamed:
        loggers[UVICORN_NAMES[name]] = loggers.pop(name)
    return renamed


def rename_ini_loggers(parser: configparser.RawConfigParser) -> list[str]:
    """Rename uvicorn's loggers in a fileConfig INI (their `qualname`), in place."""
    renamed = []
    for section in parser.sections():
        if section.startswith("logger_") and parser.has_option(section, "qualname"):
            qualname = parser.get(section, "qualname", raw=True).strip()
            if qualname in UVICORN_NAMES:
                parser.set(section, "qualname", UVICORN_NAMES[qualname])
                renamed.append(qualname)
    return renamed
