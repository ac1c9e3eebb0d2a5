"""Access log formats and escaping (formatting only; the queue is tested elsewhere)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import pytest

from steadyloop.config import ConfigError
from steadyloop.observe.access import ACCESS_LOGGER, AccessLog, compile_format, escape


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(record.getMessage())


@pytest.fixture
def captured() -> Iterator[Lines]:
    logger = logging.getLogger(ACCESS_LOGGER)
    handler = Lines()
    saved = (logger.level, logger.propagate, logger.disabled)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.disabled = False
    yield handler
    logger.removeHandler(handler)
    logger.level, logger.propagate, logger.disabled = saved


REQUEST = [(b"host", b"example.com"), (b"user-agent", b"curl/8.0"), (b"referer", b"http://r/")]
RESPONSE = [(b"Content-Type", b"application/json"), (b"x-multi", b"a"), (b"X-Multi", b"b")]


def log(access: AccessLog, target: str = "/items?id=3", **changes: object) -> None:
    fields: dict[str, object] = dict(
        client="203.0.113.9", method="GET", target=target, http_version="1.1", status=200,
        bytes_sent=1234, duration=0.0425, request_id="req-1",
        request_headers=REQUEST, response_headers=RESPONSE,
    )
    fields.update(changes)
    access.log(**fields)  # type: ignore[arg-type]


CLF_TIME = r"\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]"


def test_common(captured: Lines) -> None:
    log(AccessLog(None, "common"))
    assert re.fullmatch(
        rf'203\.0\.113\.9 - - {CLF_TIME} "GET /items\?id=3 HTTP/1\.1" 200 1234', captured.lines[0]
    )


def test_common_zero_bytes_is_a_dash(captured: Lines) -> None:
    log(AccessLog(None, "common"), status=304, bytes_sent=0)
    assert captured.lines[0].endswith('" 304 -')


def test_combined(captured: Lines) -> None:
    log(AccessLog(None, "combined"))
    assert captured.lines[0].endswith(' 200 1234 "http://r/" "curl/8.0"')


def test_combined_missing_headers_are_dashes(captured: Lines) -> None:
    log(AccessLog(None, "combined"), request_headers=[])
    assert captured.lines[0].endswith(' 200 1234 "-" "-"')


def test_json_lines(captured: Lines) -> None:
    log(AccessLog(None, "json"))
    entry = json.loads(captured.lines[0])
    assert entry.pop("time")
    assert entry == {
        "client": "203.0.113.9", "method": "GET", "path": "/items", "query": "id=3",
        "http_version": "1.1", "status": 200, "bytes": 1234, "duration_ms": 42.5,
        "request_id": "req-1", "user_agent": "curl/8.0", "referer": "http://r/",
    }


def test_custom_atoms(captured: Lines) -> None:
    fmt = (
        "%a|%h|%l|%u|%m|%U|%q|%H|%s|%>s|%b|%B|%D|%T|%{ms}T|%{us}T|%{s}T|%L|"
        "%{User-Agent}i|%{x-missing}i|%{content-type}o|%{X-Multi}o|%%"
    )
    log(AccessLog(None, fmt), duration=1.5)
    assert captured.lines[0] == (
        "203.0.113.9|203.0.113.9|-|-|GET|/items|?id=3|HTTP/1.1|200|200|1234|1234|1500000|1|"
        "1500.000|1500000|1.500000|req-1|curl/8.0|-|application/json|a, b|%"
    )


def test_custom_without_query(captured: Lines) -> None:
    log(AccessLog(None, "%U%q %r"), target="/plain", http_version="HTTP/1.0")
    assert captured.lines[0] == "/plain GET /plain HTTP/1.0"


@pytest.mark.parametrize("fmt", ["%Z", "%{x}Z", "100%", "%{x}s", "%"])
def test_bad_custom_formats_are_refused(fmt: str) -> None:
    with pytest.raises(ConfigError, match="--access-log-format"):
        compile_format(fmt)


def test_control_characters_from_the_request_are_escaped(captured: Lines) -> None:
    evil = '/a\x1b[31mred\x07?q="x"\\\r\n\x00\x7f\x9b\xff'
    log(
        AccessLog(None, "combined"),
        target=evil,
        method="G\x1bET",
        client="1.2.3.4\x1b",
        request_headers=[(b"user-agent", b"\x1b]0;pwned\x07"), (b"referer", b'"\n')],
    )
    line = captured.lines[0]
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in line)
    assert "/a\\x1b[31mred\\x07?q=\\\"x\\\"\\\\\\x0d\\x0a\\x00\\x7f\\x9b\\xff" in line
    assert '"\\x1b]0;pwned\\x07"' in line
    assert '"\\"\\x0a"' in line
    assert line.startswith("1.2.3.4\\x1b - - ")
    assert '"G\\x1bET ' in line


def test_json_escapes_control_characters(captured: Lines) -> None:
    log(AccessLog(None, "json"), target="/a\x1b[2J?x=\x00", request_id="r\n1")
    line = captured.lines[0]
    assert "\x1b" not in line and "\x00" not in line and "\n" not in line
    entry = json.loads(line)
    assert entry["path"] == "/a\x1b[2J" and entry["query"] == "x=\x00"
    assert entry["request_id"] == "r\n1"


def test_escape_leaves_plain_text_alone() -> None:
    assert escape("/plain/path?a=1&b=two") == "/plain/path?a=1&b=two"
    assert escape("".join(map(chr, range(256)))).isascii()


def test_record_carries_fields_for_structured_formatters(captured: Lines) -> None:
    log(AccessLog(None, "common"), status=404)
    record = captured.records[0]
    assert record.status_code == 404  # type: ignore[attr-defined]
    assert record.client_addr == "203.0.113.9"  # type: ignore[attr-defined]
    assert record.request_id == "req-1"  # type: ignore[attr-defined]


def test_nothing_is_done_when_the_access_logger_is_off(captured: Lines) -> None:
    logging.getLogger(ACCESS_LOGGER).disabled = True
    log(AccessLog(None, "common"))
    assert captured.lines == []
