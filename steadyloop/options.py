"""Every option once: its flag, its environment variable, and where it lands in Config.

The CLI builds its parser from this table, `steadyloop.run(**options)` uses
the same names (the flag without dashes, `timeout_keep_alive`), and every
option can also come from `STEADYLOOP_<NAME>` (`STEADYLOOP_TIMEOUT_KEEP_ALIVE`).
Precedence: flag, then environment variable, then default.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from steadyloop.config import WS_CHOICES, Config, ConfigError


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, not {text!r}")


def _optional_float(text: str) -> float | None:
    return None if text.strip().lower() in ("", "none") else float(text)


def _workers(text: str) -> int:
    if text.strip().lower() == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return int(text)


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon:
        raise ValueError(f"expected NAME:VALUE, not {text!r}")
    return name.strip(), value.strip()


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

    @property
    def name(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def env(self) -> str:
        return "STEADYLOOP_" + self.name.upper()


OPTIONS: tuple[Option, ...] = (
    # Application
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
        "app interface (default: detected)",
        choices=("auto", "asgi3", "asgi2", "wsgi"),
    ),
    # Binding
    Option("--host", "host", str, "address to listen on (default 127.0.0.1)"),
    Option("--port", "port", int, "port to listen on (default 8000; 0 picks a free one)"),
    Option("--uds", "uds", str, "listen on this UNIX domain socket instead", metavar="PATH"),
    Option("--fd", "fd", int, "serve on this already-listening file descriptor", metavar="FD"),
    Option("--backlog", "backlog", int, "listen backlog (default 2048)"),
    # Runtime
    Option(
        "--loop",
        "loop",
        str,
        "event loop (default auto: uvloop if installed)",
        choices=("auto", "uvloop", "asyncio"),
    ),
    Option("--lifespan", "lifespan", str, "ASGI lifespan (default auto)", choices=("auto", "on", "off")),
    Option(
        "--root-path",
        "root_path",
        str,
        "ASGI root_path, for apps mounted below a path prefix",
        metavar="PATH",
    ),
    Option("--threads", "threads", int, "threads for sync work: WSGI apps, `def` endpoints (default 40)"),
    Option(
        "--workers",
        "worker.workers",
        _workers,
        "worker processes, or 'auto' for one per CPU (default 1)",
        metavar="N|auto",
    ),
    Option(
        "--reuse-port", "worker.reuse_port", _bool, "give each worker its own SO_REUSEPORT socket", "flag"
    ),
    Option(
        "--max-requests", "worker.max_requests", int, "replace a worker after it served this many requests"
    ),
    Option(
        "--max-requests-jitter",
        "worker.max_requests_jitter",
        int,
        "random extra requests per worker, so they do not all restart at once",
    ),
    Option(
        "--worker-timeout",
        "worker.worker_timeout",
        _optional_float,
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
    # HTTP
    Option(
        "--limit-concurrency",
        "limits.concurrency",
        int,
        "answer 503 beyond this many connections or running requests",
    ),
    Option(
        "--limit-request-line",
        "limits.max_request_line",
        int,
        "longest request line in bytes; 414 beyond (default 8190)",
    ),
    Option(
        "--limit-request-fields",
        "limits.max_header_count",
        int,
        "most header fields in a request; 431 beyond (default 100)",
    ),
    Option(
        "--limit-request-field-size",
        "limits.max_header_size",
        int,
        "longest header field line in bytes; 431 beyond (default 8190)",
    ),
    Option(
        "--timeout-keep-alive",
        "timeouts.keep_alive",
        float,
        "close idle keep-alive connections after this many seconds (default 5)",
    ),
    Option(
        "--timeout-header-read",
        "timeouts.header_read",
        float,
        "a request head must arrive within this many seconds; 408 after (default 10)",
    ),
    Option(
        "--timeout-body-read",
        "timeouts.body_read",
        float,
        "longest pause, in seconds, while a request body is still due; 408 after; 0: none (default 60)",
    ),
    Option(
        "--timeout-write",
        "timeouts.write",
        float,
        "longest time, in seconds, a client may take none of a response; then it is aborted and the "
        "app hears http.disconnect; 0: none (default 60)",
    ),
    Option(
        "--timeout-graceful-shutdown",
        "timeouts.graceful_shutdown",
        _optional_float,
        "on shutdown, wait this long for in-flight requests (default 30)",
    ),
    Option(
        "--proxy-headers",
        "proxy_headers",
        _bool,
        "trust X-Forwarded-For/-Proto from --forwarded-allow-ips (default on)",
        "switch",
    ),
    Option(
        "--forwarded-allow-ips",
        "forwarded_allow_ips",
        _csv,
        "comma-separated proxy addresses or networks to trust, or '*' (default 127.0.0.1)",
        metavar="IPS",
    ),
    Option("--server-header", "server_header", _bool, "send 'server: steadyloop' (default on)", "switch"),
    Option("--date-header", "date_header", _bool, "send a Date header (default on)", "switch"),
    Option(
        "--header",
        "headers",
        _header,
        "extra response header NAME:VALUE (repeatable)",
        "many",
        metavar="NAME:VALUE",
    ),
    # WebSocket
    Option(
        "--ws",
        "websocket.engine",
        str,
        "WebSocket support (default auto); none serves upgrade requests as plain HTTP. "
        "uvicorn's engine names are accepted; all run the websockets sans-I/O engine",
        choices=WS_CHOICES,
    ),
    Option(
        "--ws-max-size",
        "websocket.max_size",
        int,
        "largest incoming WebSocket message in bytes; closed with 1009 beyond (default 16 MiB)",
    ),
    Option(
        "--ws-max-queue",
        "websocket.max_queue",
        int,
        "received WebSocket messages held for the app before reading pauses (default 32)",
    ),
    Option(
        "--ws-ping-interval",
        "websocket.ping_interval",
        _optional_float,
        "ping a WebSocket peer silent this many seconds; none: never (default 20)",
    ),
    Option(
        "--ws-ping-timeout",
        "websocket.ping_timeout",
        _optional_float,
        "close a WebSocket (1011) whose pong is this many seconds late; none: never (default 20)",
    ),
    Option(
        "--ws-per-message-deflate",
        "websocket.per_message_deflate",
        _bool,
        "offer permessage-deflate compression to WebSocket clients (default on)",
        "switch",
    ),
    # Logging
    Option(
        "--log-level",
        "log.level",
        str,
        "log level (default info)",
        choices=("critical", "error", "warning", "info", "debug", "trace"),
    ),
    Option("--access-log", "log.access_log", _bool, "write the access log (default on)", "switch"),
    Option(
        "--access-log-format",
        "log.access_log_format",
        str,
        "common, combined, json, or a custom format (docs/logging.md)",
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
        "when the log queue is full: drop (default) or block",
        choices=("drop", "block"),
    ),
    Option("--log-queue-records", "log.queue_records", int, "log queue bound in records (default 10000)"),
    Option("--log-queue-bytes", "log.queue_bytes", int, "log queue bound in bytes (default 16 MiB)"),
    Option(
        "--log-drain-timeout",
        "log.drain_timeout",
        float,
        "at exit, wait this long for the log queue to drain (default 5)",
    ),
    # Watchdog
    Option(
        "--block-threshold",
        "watchdog.block_threshold",
        float,
        "report event-loop blocks longer than this many seconds; 0 turns it off (default 0.1)",
    ),
    Option(
        "--block-dump-after",
        "watchdog.block_dump_after",
        float,
        "dump every thread's stack when the loop is blocked this long (default 30)",
    ),
)

BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}


def parse_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """STEADYLOOP_* variables as option values, by option name."""
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
            raise ConfigError(f"{option.env}: {exc}") from None
    return values


def build_config(app: Any, values: Mapping[str, Any]) -> Config:
    """A Config from option values by name (as `run()` and the CLI give them)."""
    unknown = set(values) - set(BY_NAME)
    if unknown:
        raise ConfigError(f"unknown option(s): {', '.join(sorted(unknown))}")
    top: dict[str, Any] = {"app": app}
    groups: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        option = BY_NAME[name]
        if option.kind == "many":
            value = tuple(value)
        if option.choices is not None and value not in option.choices:
            raise ConfigError(f"{option.flag} must be one of {', '.join(option.choices)}, not {value!r}")
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
