"""Every option once: its flag, its environment variable, and where it lands in Config.

The CLI builds its parser from this table, `steadyloop.run(**options)` uses
the same names (the flag without dashes, `timeout_keep_alive`), and every
option can also come from `STEADYLOOP_<NAME>` (`STEADYLOOP_TIMEOUT_KEEP_ALIVE`).
Precedence: flag, then environment variable, then default.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from steadyloop.config import (
    HTTP_VERSIONS,
    INTERFACES,
    LIFESPANS,
    LOG_LEVELS,
    LOOPS,
    OVERFLOW_POLICIES,
    WS_CHOICES,
    Config,
    ConfigError,
)


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, not {text!r}")


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, not {text!r}") from None


def seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"expected a number of seconds, not {text!r}") from None


def optional_seconds(text: str) -> float | None:
    return None if text.strip().lower() in ("", "none") else seconds(text)


def _workers(text: str) -> int:
    if text.strip().lower() == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected a whole number or 'auto', not {text!r}") from None


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon:
        raise ValueError(f"expected NAME:VALUE, not {text!r}")
    return name.strip(), value.strip()


def _tls_version(text: str) -> str:
    """--ssl-version: the oldest TLS version accepted. uvicorn's numbers (ssl.PROTOCOL_*) are
    accepted too: 2, 16 and 17 mean "any version", which here is TLS 1.2 and later."""
    value = text.strip().lower().removeprefix("tlsv").removeprefix("tls")
    if value in ("2", "16", "17", "5", "1.2"):  # PROTOCOL_TLS, _CLIENT, _SERVER, _TLSv1_2
        return "1.2"
    if value == "1.3":
        return "1.3"
    raise ValueError(f"expected TLSv1.2 or TLSv1.3 (TLS 1.0 and 1.1 are not offered), not {text!r}")


def _cert_reqs(text: str) -> int:
    names = {"none": 0, "optional": 1, "required": 2, "cert_none": 0, "cert_optional": 1, "cert_required": 2}
    value = text.strip().lower()
    return names[value] if value in names else int(value)


def _http(text: str) -> str:
    """--http: uvicorn's parser names are accepted and mean auto (steadyloop has one parser)."""
    value = text.strip().lower()
    if value in ("httptools", "h11"):
        # Said once, where the option is read (before any worker starts), not per worker.
        print(
            f"steadyloop: --http {value}: steadyloop has one HTTP/1.1 parser; serving as --http auto",
            file=sys.stderr,
        )
        return "auto"
    return value


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class Option:
    flag: str  # "--timeout-keep-alive"
    path: str  # "timeouts.keep_alive": where it lands in Config
    parse: Callable[[str], Any]
    help: str
    kind: str = "value"  # value | switch (--x/--no-x) | flag (--x only) | many (repeatable)
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    # Other servers' flags for the same thing, accepted as they are ("--limit-max-requests").
    aliases: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def env(self) -> str:
        return "STEADYLOOP_" + self.name.upper()


# The groups --help shows and the README's option table lists, in that order.
APP_OPTIONS: tuple[Option, ...] = (
    Option(
        "--factory", "factory", _bool, "APP is a factory: call it with no arguments to get the app", "flag"
    ),
    Option(
        "--app-dir", "app_dir", str, "directory to put first on sys.path before importing APP", metavar="DIR"
    ),
    Option(
        "--interface",
        "interface",
        str,
        "app interface; auto: detected from the app",
        choices=INTERFACES,
    ),
    Option(
        "--env-file",
        "env_file",
        str,
        "read KEY=value lines from this file into the environment first (set variables win)",
        metavar="FILE",
    ),
)
BINDING_OPTIONS: tuple[Option, ...] = (
    Option("--host", "host", str, "address to listen on", metavar="ADDRESS"),
    Option("--port", "port", whole_number, "port to listen on; 0 picks a free one"),
    Option("--uds", "uds", str, "listen on this UNIX domain socket instead", metavar="PATH"),
    Option("--fd", "fd", whole_number, "serve on this already-listening file descriptor", metavar="FD"),
    Option("--backlog", "backlog", whole_number, "listen backlog"),
    Option(
        "--reuse-port", "worker.reuse_port", _bool, "give each worker its own SO_REUSEPORT socket", "flag"
    ),
)
RUNTIME_OPTIONS: tuple[Option, ...] = (
    Option(
        "--loop",
        "loop",
        str,
        "event loop; auto: uvloop if installed",
        choices=LOOPS,
    ),
    Option("--lifespan", "lifespan", str, "ASGI lifespan; auto: if the app supports it", choices=LIFESPANS),
    Option(
        "--root-path",
        "root_path",
        str,
        "ASGI root_path, for apps mounted below a path prefix",
        metavar="PATH",
    ),
    Option("--threads", "threads", whole_number, "threads for sync work: WSGI apps, `def` endpoints"),
    Option(
        "--eager-start",
        "eager_start",
        _bool,
        "run an HTTP/1.1 request's first step at once, without a task of its own until it awaits",
        "switch",
    ),
    Option(
        "--pid-file",
        "pid_file",
        str,
        "write the server's process id to this file (removed at exit)",
        metavar="FILE",
    ),
)
WORKER_OPTIONS: tuple[Option, ...] = (
    Option(
        "--workers",
        "worker.workers",
        _workers,
        "worker processes, or 'auto' for one per CPU (WEB_CONCURRENCY if set)",
        metavar="N|auto",
    ),
    Option(
        "--max-requests",
        "worker.max_requests",
        whole_number,
        "replace a worker after it served this many requests (one process: stop gracefully)",
        aliases=("--limit-max-requests",),
    ),
    Option(
        "--max-requests-jitter",
        "worker.max_requests_jitter",
        whole_number,
        "random extra requests per worker, so they do not all restart at once",
        aliases=("--limit-max-requests-jitter",),
    ),
    Option(
        "--worker-timeout",
        "worker.worker_timeout",
        optional_seconds,
        "kill a worker whose event loop is stuck this many seconds",
    ),
    Option("--reload", "worker.reload", _bool, "restart the worker when files change (development)", "flag"),
    Option(
        "--reload-dir",
        "worker.reload_dirs",
        str,
        "directory to watch (repeatable; default: current)",
        "many",
        metavar="DIR",
    ),
    Option(
        "--reload-include",
        "worker.reload_includes",
        str,
        "glob of files to watch (repeatable)",
        "many",
        metavar="GLOB",
    ),
    Option(
        "--reload-exclude",
        "worker.reload_excludes",
        str,
        "glob of files to ignore (repeatable)",
        "many",
        metavar="GLOB",
    ),
)
HTTP_OPTIONS: tuple[Option, ...] = (
    Option(
        "--limit-concurrency",
        "limits.concurrency",
        whole_number,
        "answer 503 beyond this many connections or running requests",
    ),
    Option(
        "--limit-request-line",
        "limits.max_request_line",
        whole_number,
        "longest request line in bytes; 414 beyond",
    ),
    Option(
        "--limit-request-fields",
        "limits.max_header_count",
        whole_number,
        "most header fields in a request; 431 beyond",
    ),
    Option(
        "--limit-request-field-size",
        "limits.max_header_size",
        whole_number,
        "longest header field line in bytes; 431 beyond",
    ),
    Option(
        "--timeout-keep-alive",
        "timeouts.keep_alive",
        seconds,
        "close idle keep-alive connections after this many seconds; 0 turns keep-alive off",
    ),
    Option(
        "--timeout-header-read",
        "timeouts.header_read",
        seconds,
        "a request head must arrive within this many seconds; 408 after",
    ),
    Option(
        "--timeout-body-read",
        "timeouts.body_read",
        seconds,
        "longest pause, in seconds, while a request body is still due; 408 after; 0: none",
    ),
    Option(
        "--timeout-write",
        "timeouts.write",
        seconds,
        "longest time, in seconds, a client may take none of a response; then it is aborted and the "
        "app hears http.disconnect; 0: none",
    ),
    Option(
        "--timeout-graceful-shutdown",
        "timeouts.graceful_shutdown",
        optional_seconds,
        "on shutdown, wait this many seconds for in-flight requests",
    ),
    Option(
        "--proxy-headers",
        "proxy_headers",
        _bool,
        "trust X-Forwarded-For/-Proto from --forwarded-allow-ips",
        "switch",
    ),
    Option(
        "--forwarded-allow-ips",
        "forwarded_allow_ips",
        _csv,
        "comma-separated proxy addresses or networks to trust, or '*'",
        metavar="IPS",
    ),
    Option("--server-header", "server_header", _bool, "send 'server: steadyloop'", "switch"),
    Option("--date-header", "date_header", _bool, "send a Date header", "switch"),
    Option(
        "--header",
        "headers",
        _header,
        "extra response header NAME:VALUE (repeatable)",
        "many",
        metavar="NAME:VALUE",
    ),
)
# One block, kept together for merges.
WEBSOCKET_OPTIONS: tuple[Option, ...] = (
    Option(
        "--ws",
        "websocket.engine",
        str,
        "WebSocket support; none serves upgrade requests as plain HTTP. "
        "uvicorn's engine names are accepted; all run the websockets sans-I/O engine",
        choices=WS_CHOICES,
    ),
    Option(
        "--ws-max-size",
        "websocket.max_size",
        whole_number,
        "largest incoming WebSocket message in bytes; closed with 1009 beyond",
    ),
    Option(
        "--ws-max-queue",
        "websocket.max_queue",
        whole_number,
        "received WebSocket messages held for the app before reading pauses",
    ),
    Option(
        "--ws-ping-interval",
        "websocket.ping_interval",
        optional_seconds,
        "ping a WebSocket peer silent this many seconds; none: never",
    ),
    Option(
        "--ws-ping-timeout",
        "websocket.ping_timeout",
        optional_seconds,
        "close a WebSocket (1011) whose pong is this many seconds late; none: never",
    ),
    Option(
        "--ws-per-message-deflate",
        "websocket.per_message_deflate",
        _bool,
        "offer permessage-deflate compression to WebSocket clients",
        "switch",
    ),
)
LOGGING_OPTIONS: tuple[Option, ...] = (
    Option("--log-level", "log.level", str, "log level", choices=LOG_LEVELS),
    Option("--access-log", "log.access_log", _bool, "write the access log", "switch"),
    Option(
        "--use-colors",
        "log.use_colors",
        _bool,
        "colour log levels (default: on a terminal, unless NO_COLOR is set)",
        "switch",
    ),
    Option(
        "--access-log-format",
        "log.access_log_format",
        str,
        "common, combined, json, or a custom format of %%-atoms",
        metavar="FORMAT",
    ),
    Option(
        "--log-config",
        "log.config_file",
        str,
        "logging dictConfig file: .json, .yaml/.yml or .ini",
        metavar="FILE",
    ),
    Option(
        "--log-sync",
        "log.sync",
        _bool,
        "write logs synchronously on the calling thread (debugging only)",
        "flag",
    ),
    Option(
        "--log-overflow",
        "log.overflow",
        str,
        "when the log queue is full: drop records (counted) or make the caller wait",
        choices=OVERFLOW_POLICIES,
    ),
    Option("--log-queue-records", "log.queue_records", whole_number, "log queue bound in records"),
    Option("--log-queue-bytes", "log.queue_bytes", whole_number, "log queue bound in bytes"),
    Option(
        "--log-drain-timeout",
        "log.drain_timeout",
        seconds,
        "at exit, wait this many seconds for the log queue to drain",
    ),
)
WATCHDOG_OPTIONS: tuple[Option, ...] = (
    Option(
        "--block-threshold",
        "watchdog.block_threshold",
        seconds,
        "report event-loop blocks longer than this many seconds; 0 turns it off",
    ),
    Option(
        "--block-dump-after",
        "watchdog.block_dump_after",
        seconds,
        "dump every thread's stack when the loop is blocked this many seconds",
    ),
)
METRICS_OPTIONS: tuple[Option, ...] = (
    Option(
        "--metrics",
        "metrics.enabled",
        _bool,
        "serve Prometheus metrics (/metrics) and a live status page (/) on --metrics-port",
        kind="flag",
    ),
    Option(
        "--metrics-address",
        "metrics.address",
        str,
        "address of the metrics listener (keep it for operators only)",
        metavar="ADDRESS",
    ),
    Option("--metrics-port", "metrics.port", whole_number, "port of the metrics listener"),
)

TLS_OPTIONS: tuple[Option, ...] = (
    Option(
        "--ssl-certfile", "tls.certfile", str, "serve HTTPS with this PEM certificate (chain)", metavar="FILE"
    ),
    Option("--ssl-keyfile", "tls.keyfile", str, "the certificate's PEM private key", metavar="FILE"),
    Option(
        "--ssl-keyfile-password",
        "tls.keyfile_password",
        str,
        "password of an encrypted key file",
        metavar="TEXT",
    ),
    Option(
        "--ssl-version",
        "tls.version",
        _tls_version,
        "oldest TLS version accepted: TLSv1.2 or TLSv1.3",
        metavar="VERSION",
    ),
    Option(
        "--ssl-cert-reqs",
        "tls.cert_reqs",
        _cert_reqs,
        "client certificates (mutual TLS): 0 none, 1 optional, 2 required",
        metavar="0|1|2",
    ),
    Option("--ssl-ca-certs", "tls.ca_certs", str, "CA bundle to verify client certificates", metavar="FILE"),
    Option(
        "--ssl-ciphers",
        "tls.ciphers",
        str,
        "OpenSSL cipher list for TLS 1.2 (unset: Python's)",
        metavar="LIST",
    ),
)
HTTP2_OPTIONS: tuple[Option, ...] = (
    Option(
        "--http",
        "http",
        _http,
        "HTTP versions: auto (1.1 and 2), 1, or 2; uvicorn's httptools/h11 mean auto",
        choices=HTTP_VERSIONS,
    ),
    Option(
        "--http2-max-concurrent-streams",
        "http2.max_concurrent_streams",
        whole_number,
        "streams one HTTP/2 client may have open",
    ),
    Option(
        "--http2-initial-stream-window-size",
        "http2.initial_stream_window_size",
        whole_number,
        "request body bytes one stream may send ahead of the app",
        metavar="BYTES",
    ),
    Option(
        "--http2-initial-connection-window-size",
        "http2.initial_connection_window_size",
        whole_number,
        "request body bytes a connection may send ahead of the apps",
        metavar="BYTES",
    ),
    Option(
        "--http2-max-frame-size",
        "http2.max_frame_size",
        whole_number,
        "largest frame received",
        metavar="BYTES",
    ),
    Option(
        "--http2-max-headers-size",
        "http2.max_headers_size",
        whole_number,
        "largest decoded header list of a request",
        metavar="BYTES",
    ),
    Option(
        "--http2-keep-alive-interval",
        "http2.keep_alive_interval",
        optional_seconds,
        "send a PING after this many seconds of silence (unset: never)",
    ),
    Option(
        "--http2-keep-alive-timeout",
        "http2.keep_alive_timeout",
        seconds,
        "close the connection when a PING is not answered within this",
    ),
)
GROUPS: tuple[tuple[str, tuple[Option, ...]], ...] = (
    ("app", APP_OPTIONS),
    ("binding", BINDING_OPTIONS),
    ("runtime", RUNTIME_OPTIONS),
    ("HTTP", HTTP_OPTIONS),
    ("TLS", TLS_OPTIONS),
    ("HTTP/2", HTTP2_OPTIONS),
    ("WebSocket", WEBSOCKET_OPTIONS),
    ("logging", LOGGING_OPTIONS),
    ("watchdog", WATCHDOG_OPTIONS),
    ("metrics", METRICS_OPTIONS),
    ("workers", WORKER_OPTIONS),
)
OPTIONS: tuple[Option, ...] = tuple(option for _, group in GROUPS for option in group)
BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}
# run(limit_max_requests=...) as uvicorn.run() takes it.
ALIAS_NAMES: dict[str, str] = {
    alias.lstrip("-").replace("-", "_"): option.name for option in OPTIONS for alias in option.aliases
}


def default_of(option: Option) -> Any:
    """The option's default, read from Config: the one place defaults are written."""
    group, dot, field = option.path.partition(".")
    fields = Config.__dataclass_fields__
    if not dot:
        return fields[group].default
    factory = fields[group].default_factory
    assert factory is not dataclasses.MISSING
    return getattr(factory(), field)


def parse_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """STEADYLOOP_* variables (and WEB_CONCURRENCY) as option values, by option name."""
    values: dict[str, Any] = {}
    for option in OPTIONS:
        raw = environ.get(option.env)
        if raw is None:
            continue
        try:
            if option.kind in ("switch", "flag"):
                values[option.name] = _bool(raw)
            elif option.kind == "many":
                separator = "\n" if option.name == "header" else ","
                values[option.name] = [option.parse(p) for p in raw.split(separator) if p.strip()]
            else:
                values[option.name] = option.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"environment variable {option.env}: {exc}") from None
    if "workers" not in values and environ.get("WEB_CONCURRENCY"):
        # Set by many platforms (Heroku, Render, Dokku) to the process count they size for;
        # uvicorn and gunicorn honour it, below their own flag and variable.
        try:
            values["workers"] = whole_number(environ["WEB_CONCURRENCY"])
        except ValueError as exc:
            raise ConfigError(f"environment variable WEB_CONCURRENCY: {exc}") from None
    return values


def build_config(app: Any, values: Mapping[str, Any]) -> Config:
    """A Config from option values by name (as `run()` and the CLI give them)."""
    values = {ALIAS_NAMES.get(name, name): value for name, value in values.items()}
    unknown = set(values) - set(BY_NAME)
    if unknown:
        raise ConfigError(f"unknown option(s): {', '.join(sorted(unknown))}")
    top: dict[str, Any] = {"app": app}
    groups: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        option = BY_NAME[name]
        if option.kind == "many":
            value = tuple(value)
        group, dot, field = option.path.partition(".")
        if dot:
            groups.setdefault(group, {})[field] = value
        else:
            top[group] = value
    defaults = Config.__dataclass_fields__
    for group, fields in groups.items():
        factory = defaults[group].default_factory
        assert factory is not dataclasses.MISSING
        top[group] = dataclasses.replace(factory(), **fields)
    return Config(**top)
