"""The access log: fields captured on the loop, lines formatted on the writer thread.

`AccessLog.log()` runs on the event loop after every response, so it only packs
its arguments into a tuple and queues it. The writer thread turns the tuple
into a line in the chosen format and hands it, as a record of the
"steadyloop.access" logger, to that logger's handlers.

Formats: "common" and "combined" (Apache's), "json" (one JSON object per
line), or a custom format made of Apache-style atoms:

    %h %a  client address          %t   time the request was received
    %l %u  "-" (ident, user)       %r   request line: method target protocol
    %m     method                  %U   path          %q  query, with its "?"
    %H     protocol (HTTP/1.1)     %s %>s  status     %L  request id
    %b     body bytes ("-" for 0)  %B   body bytes
    %D     duration in microseconds
    %T     duration in whole seconds; %{ms}T, %{us}T, %{s}T (fractional seconds)
    %{Name}i  a request header     %{Name}o  a response header
    %%     a literal "%"

Everything that comes from the request (target, method, headers, client,
request id) is escaped: control characters and bytes above 0x7e become \\xhh,
and `"` and `\\` are backslashed, so a request can neither inject terminal
escapes nor break the line's quoting. JSON lines escape through JSON itself.

A response the server cut short (a client that took no bytes for
--timeout-write) says why at the end of its line, ` (write timeout)`, and in
a JSON line's "note".
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from steadyloop.config import ConfigError

if TYPE_CHECKING:
    from steadyloop.observe.logsetup import LogPipeline

ACCESS_LOGGER = "steadyloop.access"

COMMON = '%h %l %u %t "%r" %>s %b'
COMBINED = COMMON + ' "%{Referer}i" "%{User-Agent}i"'
NAMED_FORMATS = {"common": COMMON, "combined": COMBINED}
# The message uvicorn's access records carry (client, method, path, HTTP version, status).
UVICORN_ACCESS = '%s - "%s %s HTTP/%s" %d'

Headers = list[tuple[bytes, bytes]]
# The tuple log() queues; the writer thread unpacks it.
# (time, client, method, target, http_version, status, bytes_sent, duration,
#  request_id, request_headers, response_headers, note)
Fields = tuple[float, str, str, str, str, int, int, float, str, Headers, Headers, str]

_ESCAPES = {i: f"\\x{i:02x}" for i in [*range(0x20), *range(0x7F, 0x100)]}
_ESCAPES[ord('"')] = '\\"'
_ESCAPES[ord("\\")] = "\\\\"


def escape(text: str) -> str:
    """Make request-supplied text safe to write on a terminal and inside quotes."""
    return text.translate(_ESCAPES)


def header(headers: Headers, name: bytes) -> str | None:
    """A header's value (several joined by ", "), decoded as latin-1; None when absent."""
    found = [value for key, value in headers if key.lower() == name]
    if not found:
        return None
    return b", ".join(found).decode("latin-1")


class AccessLog:
    def __init__(self, pipeline: LogPipeline | None, fmt: str) -> None:
        self._logger = logging.getLogger(ACCESS_LOGGER)
        self._format_line = compile_format(fmt)
        self._put = pipeline.access_put if pipeline is not None else None
        self._uvicorn_records = pipeline is not None and pipeline.uvicorn_access

    @property
    def logger(self) -> logging.Logger:
        return self._logger

    def log(
        self,
        client: str,
        method: str,
        target: str,
        http_version: str,
        status: int,
        bytes_sent: int,
        duration: float,
        request_id: str,
        request_headers: Headers,
        response_headers: Headers,
        note: str = "",
    ) -> None:
        """Queue one access line. On the event loop: capture and append, nothing more.

        The header lists are kept, not copied: they must not be changed afterwards.
        """
        if not self._logger.isEnabledFor(logging.INFO):
            return
        fields: Fields = (
            time.time(),
            client,
            method,
            target,
            http_version,
            status,
            bytes_sent,
            duration,
            request_id,
            request_headers,
            response_headers,
            note,
        )
        put = self._put
        if put is None or not put(self, fields, logging.INFO, "INFO", 512):
            self._logger.handle(self.make_record(fields))  # --log-sync: write it here

    def make_record(self, fields: Fields) -> logging.LogRecord:
        """On the writer thread: the formatted line as a record of the access logger."""
        if self._uvicorn_records:
            # As uvicorn logs it: its AccessFormatter unpacks these five args (escaped, as
            # every field from the request is here).
            args = (escape(fields[1]), escape(fields[2]), escape(fields[3]), fields[4], fields[5])
            record = logging.LogRecord(ACCESS_LOGGER, logging.INFO, __file__, 0, UVICORN_ACCESS, args, None)
        else:
            line = self._format_line(fields)
            record = logging.LogRecord(ACCESS_LOGGER, logging.INFO, __file__, 0, line, None, None)
        record.created = fields[0]
        record.msecs = (fields[0] - int(fields[0])) * 1000
        # For formatters that want fields rather than a line (JSON log shippers).
        record.client_addr = fields[1]
        record.method = fields[2]
        record.target = fields[3]
        record.status_code = fields[5]
        record.bytes_sent = fields[6]
        record.duration = fields[7]
        record.request_id = fields[8]
        return record


# -- formats ---------------------------------------------------------------------------

Atom = Callable[[Fields], str]

_ATOM_RE = re.compile(r"%(?:\{([^}]*)\})?(>?)([a-zA-Z%])")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def compile_format(fmt: str) -> Callable[[Fields], str]:
    """Turn a format name or a custom format into a function of the captured fields."""
    if fmt == "json":
        return _json_line
    template = NAMED_FORMATS.get(fmt, fmt)
    parts: list[Atom] = []
    pos = 0
    for match in [*_ATOM_RE.finditer(template), None]:
        end = match.start() if match is not None else len(template)
        text = template[pos:end]
        if "%" in text:
            raise ConfigError(f"--access-log-format {fmt!r}: a '%' does not start a known atom")
        if text:
            parts.append(_literal(text))
        if match is not None:
            parts.append(_atom(match.group(1), match.group(3), fmt))
            pos = match.end()

    def line(fields: Fields) -> str:
        text = "".join([part(fields) for part in parts])
        return f"{text} ({fields[11]})" if fields[11] else text

    return line


def _literal(text: str) -> Atom:
    def literal(fields: Fields) -> str:
        return text

    return literal


def _atom(arg: str | None, letter: str, fmt: str) -> Atom:
    if letter == "i" and arg:
        name = arg.lower().encode("latin-1")
        return lambda f: escape(header(f[9], name) or "-")
    if letter == "o" and arg:
        name = arg.lower().encode("latin-1")
        return lambda f: escape(header(f[10], name) or "-")
    if letter == "T":
        unit = (arg or "").lower()
        if unit == "ms":
            return lambda f: f"{f[7] * 1000:.3f}"
        if unit == "us":
            return lambda f: str(round(f[7] * 1_000_000))
        if unit == "s":
            return lambda f: f"{f[7]:.6f}"
        if unit == "":
            return lambda f: str(int(f[7]))
    simple: dict[str, Atom] = {
        "h": lambda f: escape(f[1] or "-"),
        "a": lambda f: escape(f[1] or "-"),
        "l": lambda f: "-",
        "u": lambda f: "-",
        "t": lambda f: _apache_time(f[0] - f[7]),
        "r": lambda f: f"{escape(f[2])} {escape(f[3])} {_protocol(f[4])}",
        "m": lambda f: escape(f[2]),
        "U": lambda f: escape(f[3].partition("?")[0]),
        "q": lambda f: escape(_query(f[3])),
        "H": lambda f: _protocol(f[4]),
        "s": lambda f: str(f[5]),
        "b": lambda f: str(f[6]) if f[6] else "-",
        "B": lambda f: str(f[6]),
        "D": lambda f: str(round(f[7] * 1_000_000)),
        "L": lambda f: escape(f[8] or "-"),
        "%": lambda f: "%",
    }
    found = simple.get(letter) if arg is None else None
    if found is None:
        shown = f"%{{{arg}}}{letter}" if arg is not None else f"%{letter}"
        raise ConfigError(f"--access-log-format {fmt!r}: unknown atom {shown}")
    return found


def _protocol(version: str) -> str:
    return escape(version if version.startswith("HTTP/") else f"HTTP/{version}")


def _query(target: str) -> str:
    _, sep, query = target.partition("?")
    return sep + query


_time_cache: dict[int, str] = {}


def _apache_time(ts: float) -> str:
    """[10/Oct/2000:13:55:36 -0700], local time, no locale (month names are fixed)."""
    second = int(ts)
    cached = _time_cache.get(second)
    if cached is not None:
        return cached
    t = time.localtime(second)
    offset = t.tm_gmtoff // 60
    sign = "-" if offset < 0 else "+"
    offset = abs(offset)
    text = (
        f"[{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {sign}{offset // 60:02d}{offset % 60:02d}]"
    )
    if len(_time_cache) > 4:  # only the writer thread uses it; a few seconds are plenty
        _time_cache.clear()
    _time_cache[second] = text
    return text


def _iso_time(ts: float) -> str:
    t = time.localtime(int(ts))
    offset = t.tm_gmtoff // 60
    sign = "-" if offset < 0 else "+"
    offset = abs(offset)
    millis = int((ts - int(ts)) * 1000)
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:"
        f"{t.tm_sec:02d}.{millis:03d}{sign}{offset // 60:02d}:{offset % 60:02d}"
    )


def _json_line(f: Fields) -> str:
    path, sep, query = f[3].partition("?")
    entry: dict[str, Any] = {
        "time": _iso_time(f[0] - f[7]),
        "client": f[1],
        "method": f[2],
        "path": path,
        "query": query if sep else None,
        "http_version": f[4],
        "status": f[5],
        "bytes": f[6],
        "duration_ms": round(f[7] * 1000, 3),
        "request_id": f[8] or None,
        "user_agent": header(f[9], b"user-agent"),
        "referer": header(f[9], b"referer"),
    }
    if f[11]:
        entry["note"] = f[11]
    # ensure_ascii: every control character and non-ASCII byte is written as \\uXXXX.
    return json.dumps(entry, ensure_ascii=True)
