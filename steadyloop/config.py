"""Configuration: small frozen dataclasses, grouped by concern, validated once.

A `Config` is built by the CLI (flags and STEADYLOOP_* variables) or by
`steadyloop.run(app, **options)`. It never imports the app and never exits the
process: invalid values raise `ConfigError` with a message fit for one line.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from steadyloop.http.grammar import is_token

# Each choice is written once, here: the flags' choices and the validation read them.
LoopChoice = Literal["auto", "uvloop", "asyncio"]
LifespanChoice = Literal["auto", "on", "off"]
InterfaceChoice = Literal["auto", "asgi3", "asgi2", "wsgi"]
OverflowPolicy = Literal["drop", "block"]
LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]
HttpChoice = Literal["auto", "1", "2"]
# uvicorn's --ws values, all accepted; every value but "none" runs the one engine we have.
WebSocketChoice = Literal["auto", "none", "websockets", "websockets-sansio", "wsproto"]

LOOPS: tuple[str, ...] = get_args(LoopChoice)
LIFESPANS: tuple[str, ...] = get_args(LifespanChoice)
INTERFACES: tuple[str, ...] = get_args(InterfaceChoice)
OVERFLOW_POLICIES: tuple[str, ...] = get_args(OverflowPolicy)
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)
HTTP_VERSIONS: tuple[str, ...] = get_args(HttpChoice)
WS_CHOICES: tuple[str, ...] = get_args(WebSocketChoice)


class ConfigError(ValueError):
    """An option has a value steadyloop cannot use. The message is one line."""


@dataclass(frozen=True)
class Limits:
    """What a client may send before it is refused."""

    max_request_line: int = 8190  # 414 beyond this
    max_header_count: int = 100  # 431 beyond this
    max_header_size: int = 8190  # one field line; 431 beyond this
    max_head_size: int = 65536  # the whole request head; 431 beyond this
    concurrency: int | None = None  # connections + tasks; 503 beyond this


@dataclass(frozen=True)
class Timeouts:
    keep_alive: float = 5.0  # idle keep-alive connection is closed after this; 0: no keep-alive
    header_read: float = 10.0  # a request head must arrive whole within this (slowloris)
    body_read: float = 60.0  # longest silence while a request body is still due; 0: no limit
    write: float = 60.0  # longest time a client may take no response bytes; 0: no limit
    graceful_shutdown: float | None = 30.0  # in-flight requests get this long on shutdown


@dataclass(frozen=True)
class LogOptions:
    level: str = "info"
    access_log: bool = True
    access_log_format: str = "common"  # common | combined | json | a custom format
    config_file: str | None = None  # dictConfig as JSON, YAML or INI
    # Files for the server's records and the access log instead of stderr and stdout
    # ("-" or None: the stream); set by the gunicorn worker from --error-logfile and
    # --access-logfile.
    error_file: str | None = None
    access_file: str | None = None
    use_colors: bool | None = None  # None: on a terminal, unless NO_COLOR is set
    sync: bool = False  # --log-sync: no queue, no writer thread (debugging)
    overflow: OverflowPolicy = "drop"
    queue_records: int = 10000
    queue_bytes: int = 16 * 1024 * 1024
    drain_timeout: float = 5.0


@dataclass(frozen=True)
class WatchdogOptions:
    block_threshold: float = 0.1  # seconds; 0 turns the watchdog off
    block_dump_after: float = 30.0  # seconds; faulthandler dump of every thread


@dataclass(frozen=True)
class MetricsOptions:
    enabled: bool = False  # --metrics: Prometheus metrics and the status page
    address: str = "127.0.0.1"  # operators only: not exposed unless asked for
    port: int = 9090


@dataclass(frozen=True)
class WorkerOptions:
    workers: int = 1
    reuse_port: bool = False
    max_requests: int | None = None
    max_requests_jitter: int = 0
    worker_timeout: float | None = None
    reload: bool = False
    reload_dirs: tuple[str, ...] = ()
    reload_includes: tuple[str, ...] = ()
    reload_excludes: tuple[str, ...] = ()


@dataclass(frozen=True)
class TLSOptions:
    """--ssl-*: serve HTTPS when both a certificate and its key are given."""

    keyfile: str | None = None
    certfile: str | None = None
    keyfile_password: str | None = None
    version: str = "1.2"  # the oldest TLS version accepted: "1.2" or "1.3"
    cert_reqs: int = 0  # ssl.CERT_NONE / CERT_OPTIONAL / CERT_REQUIRED (0, 1, 2): client certificates
    ca_certs: str | None = None  # CA bundle that client certificates are checked against
    ciphers: str | None = None  # OpenSSL cipher list for TLS 1.2; None: the stdlib's secure default

    @property
    def enabled(self) -> bool:
        return self.certfile is not None


@dataclass(frozen=True)
class Http2Options:
    """--http2-*: what this server tells HTTP/2 clients, and what it accepts from them."""

    max_concurrent_streams: int = 100
    initial_stream_window_size: int = 1024 * 1024  # request body bytes a stream may send unread
    initial_connection_window_size: int = 4 * 1024 * 1024  # the same, for all streams together
    max_frame_size: int = 16384
    max_headers_size: int = 65536  # a request's decoded header list (RFC 9113 SETTINGS_MAX_HEADER_LIST_SIZE)
    keep_alive_interval: float | None = None  # seconds of silence before a PING; None: no PING
    keep_alive_timeout: float = 20.0  # a PING unanswered this long closes the connection


@dataclass(frozen=True)
class WebSocketOptions:
    engine: WebSocketChoice = "auto"  # "none": an upgrade request is served as plain HTTP
    max_size: int = 16 * 1024 * 1024  # largest incoming message; 1009 beyond
    max_queue: int = 32  # received messages the app has not taken before reading pauses
    ping_interval: float | None = 20.0  # ping a peer silent this long; None: never
    ping_timeout: float | None = 20.0  # close (1011) when the pong is this late; None: never
    per_message_deflate: bool = True  # offer permessage-deflate (RFC 7692)


@dataclass(frozen=True)
class Config:
    app: Any = None  # "module:attr", an app object, or None for the demo app
    factory: bool = False
    app_dir: str | None = None
    interface: InterfaceChoice = "auto"
    env_file: str | None = None  # KEY=value lines put into the environment first

    host: str = "127.0.0.1"
    port: int = 8000
    uds: str | None = None
    fd: int | None = None
    backlog: int = 2048
    tls: TLSOptions = field(default_factory=TLSOptions)
    http: HttpChoice = "auto"  # which HTTP versions: auto (1.1 and 2), 1, 2 (cleartext: h2c only)
    http2: Http2Options = field(default_factory=Http2Options)

    loop: LoopChoice = "auto"
    lifespan: LifespanChoice = "auto"
    root_path: str = ""
    threads: int = 40  # the thread pool for sync work (WSGI, `def` endpoints)
    eager_start: bool = True  # an ASGI request's first step runs in the read callback
    pid_file: str | None = None

    proxy_headers: bool = True
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1",)
    server_header: bool = True
    date_header: bool = True
    headers: tuple[tuple[str, str], ...] = ()  # extra response headers

    limits: Limits = field(default_factory=Limits)
    timeouts: Timeouts = field(default_factory=Timeouts)
    log: LogOptions = field(default_factory=LogOptions)
    watchdog: WatchdogOptions = field(default_factory=WatchdogOptions)
    worker: WorkerOptions = field(default_factory=WorkerOptions)
    metrics: MetricsOptions = field(default_factory=MetricsOptions)
    websocket: WebSocketOptions = field(default_factory=WebSocketOptions)

    def __post_init__(self) -> None:
        _validate(self)

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


def _validate(config: Config) -> None:
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    need(0 <= config.port <= 65535, f"--port must be 0..65535, not {config.port}")
    need(config.backlog > 0, "--backlog must be positive")

    def one_of(flag: str, value: str, choices: tuple[str, ...]) -> None:
        need(value in choices, f"{flag} must be one of {', '.join(choices)}, not {value!r}")

    one_of("--loop", config.loop, LOOPS)
    one_of("--lifespan", config.lifespan, LIFESPANS)
    one_of("--interface", config.interface, INTERFACES)
    need(config.threads >= 1, "--threads must be at least 1")
    need(config.root_path == "" or config.root_path.startswith("/"), "--root-path must start with '/'")
    need(
        sum(x is not None for x in (config.uds, config.fd)) <= 1,
        "--uds and --fd cannot be used together",
    )
    for name, value in config.headers:
        need(is_token(name), f"--header name {name!r} is not a valid header name")
        need(not any(c in value for c in "\r\n\0"), f"--header value for {name!r} contains CR, LF or NUL")

    _validate_tls_http2(config, need)

    lim = config.limits
    need(lim.max_request_line >= 64, "--limit-request-line must be at least 64")
    need(lim.max_header_count >= 1, "--limit-request-fields must be at least 1")
    need(lim.max_header_size >= 64, "--limit-request-field-size must be at least 64")
    need(lim.concurrency is None or lim.concurrency >= 1, "--limit-concurrency must be at least 1")

    t = config.timeouts
    need(t.keep_alive >= 0, "--timeout-keep-alive must not be negative (0 turns keep-alive off)")
    need(t.header_read > 0, "--timeout-header-read must be positive")
    need(t.body_read >= 0, "--timeout-body-read must not be negative")
    need(t.write >= 0, "--timeout-write must not be negative")
    need(
        t.graceful_shutdown is None or t.graceful_shutdown >= 0,
        "--timeout-graceful-shutdown must not be negative",
    )

    log = config.log
    one_of("--log-level", log.level.lower(), LOG_LEVELS)
    one_of("--log-overflow", log.overflow, OVERFLOW_POLICIES)
    need(log.queue_records >= 1 and log.queue_bytes >= 1024, "log queue bounds are too small")
    need(log.drain_timeout >= 0, "--log-drain-timeout must not be negative")
    if log.config_file is not None:
        need(os.path.isfile(log.config_file), f"--log-config file not found: {log.config_file}")

    wd = config.watchdog
    need(wd.block_threshold >= 0, "--block-threshold must not be negative")
    need(wd.block_dump_after >= 0, "--block-dump-after must not be negative")

    m = config.metrics
    need(0 <= m.port <= 65535, f"--metrics-port must be 0..65535, not {m.port}")
    need(
        not m.enabled
        or m.port == 0
        or m.port != config.port
        or config.uds is not None
        or config.fd is not None,
        "--metrics-port must differ from --port",
    )

    ws = config.websocket
    need(ws.engine in WS_CHOICES, f"--ws must be one of {', '.join(WS_CHOICES)}, not {ws.engine!r}")
    need(ws.max_size >= 1, "--ws-max-size must be at least 1")
    need(ws.max_queue >= 1, "--ws-max-queue must be at least 1")
    need(ws.ping_interval is None or ws.ping_interval > 0, "--ws-ping-interval must be positive")
    need(ws.ping_timeout is None or ws.ping_timeout > 0, "--ws-ping-timeout must be positive")

    w = config.worker
    need(w.workers >= 1, "--workers must be at least 1")
    need(w.max_requests is None or w.max_requests >= 1, "--max-requests must be at least 1")
    need(w.max_requests_jitter >= 0, "--max-requests-jitter must not be negative")
    need(w.worker_timeout is None or w.worker_timeout > 0, "--worker-timeout must be positive")


def _validate_tls_http2(config: Config, need: Any) -> None:
    tls = config.tls
    need(tls.keyfile is None or tls.certfile is not None, "--ssl-keyfile needs --ssl-certfile")
    for flag, path in (("--ssl-certfile", tls.certfile), ("--ssl-keyfile", tls.keyfile)):
        need(path is None or os.path.isfile(path), f"{flag} file not found: {path}")
    need(tls.ca_certs is None or os.path.exists(tls.ca_certs), f"--ssl-ca-certs not found: {tls.ca_certs}")
    need(tls.version in ("1.2", "1.3"), f"--ssl-version must be TLSv1.2 or TLSv1.3, not {tls.version!r}")
    need(tls.cert_reqs in (0, 1, 2), "--ssl-cert-reqs must be 0 (none), 1 (optional) or 2 (required)")
    need(tls.cert_reqs == 0 or tls.enabled, "--ssl-cert-reqs needs --ssl-certfile")
    need(
        config.http in HTTP_VERSIONS, f"--http must be one of {', '.join(HTTP_VERSIONS)}, not {config.http!r}"
    )
    h2 = config.http2
    need(h2.max_concurrent_streams >= 1, "--http2-max-concurrent-streams must be at least 1")
    # RFC 9113 §6.5.2: window sizes up to 2^31-1; frame sizes 2^14 .. 2^24-1.
    for flag, size in (
        ("--http2-initial-stream-window-size", h2.initial_stream_window_size),
        ("--http2-initial-connection-window-size", h2.initial_connection_window_size),
    ):
        need(65535 <= size <= 2**31 - 1, f"{flag} must be 65535..2147483647")
    need(16384 <= h2.max_frame_size <= 2**24 - 1, "--http2-max-frame-size must be 16384..16777215")
    need(h2.max_headers_size >= 1024, "--http2-max-headers-size must be at least 1024")
    need(
        h2.keep_alive_interval is None or h2.keep_alive_interval > 0,
        "--http2-keep-alive-interval must be positive",
    )
    need(h2.keep_alive_timeout > 0, "--http2-keep-alive-timeout must be positive")
