"""Logging for one worker process: configure, put every handler behind the queue, drain.

`setup_logging(options)` is called once in each process that serves (after
any fork), before the app is imported:

1. The server's loggers get their defaults, like uvicorn's: "steadyloop" (and
   so "steadyloop.error" and every other "steadyloop.*" logger) writes to
   stderr, "steadyloop.access" writes bare lines to stdout. Neither propagates
   to the root logger.
2. `--log-config` is applied: dictConfig from JSON or YAML, or an INI file
   (fileConfig), as uvicorn does; uvicorn's logger names in it are taken as ours.
3. `--log-level` sets the level of "steadyloop" ("trace" is level 5).
4. Unless `--log-sync`: every handler moves behind the queue, the writer thread
   starts, and the queue is drained at interpreter exit (atexit) and on SIGTERM
   when nothing else handles SIGTERM.

The returned `LogPipeline` is what the server keeps: `adopt_handlers()` after
importing the app and after lifespan startup, `shutdown()` at the end,
`dropped()` and `lost()` for metrics (`log_losses()` reads them for whoever has
no pipeline at hand). At shutdown the totals are said on stderr, so a loss is
never silent.
"""

from __future__ import annotations

import atexit
import configparser
import json
import logging
import logging.config
import logging.handlers
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, NamedTuple

from steadyloop.config import ConfigError, LogOptions
from steadyloop.observe.logadopt import Adopter
from steadyloop.observe.logcompat import UVICORN_NAMES, rename_dict_loggers, rename_ini_loggers
from steadyloop.observe.logformat import SERVER_FORMAT, ServerFormatter, fallback_handler, wants_colours
from steadyloop.observe.logqueue import CLOSED, LogQueue
from steadyloop.observe.logsink import write_without_blocking
from steadyloop.observe.logwriter import Writer

TRACE = 5
SERVER_LOGGER = "steadyloop"
ERROR_LOGGER = "steadyloop.error"
ACCESS_LOGGER = "steadyloop.access"

ACCESS_FORMAT = "%(message)s"
_DEFAULT_ATTR = "_steadyloop_default"

PutFn = Callable[[Any, Any, int, str, int], bool]


class LogPipeline:
    """One process's logging: the queue, its writer thread, and what was adopted."""

    def __init__(self, options: LogOptions) -> None:
        self.options = options
        self.sync = options.sync
        self._queue: LogQueue | None = None
        self._adopter: Adopter | None = None
        self._closed = False
        self._previous_sigterm: Any = None
        # Access records made as uvicorn makes them, for a uvicorn log config's formatters.
        self.uvicorn_access = False
        if not self.sync:
            self._queue = LogQueue(
                Writer(),
                max_records=options.queue_records,
                max_bytes=options.queue_bytes,
                overflow=options.overflow,
                on_tick=self._on_writer_tick,
            )
            self._adopter = Adopter(self._queue)

    def start(self) -> None:
        if self._queue is None or self._adopter is None:
            return
        self._adopter.install_hook()
        self._adopter.adopt_all()
        self._queue.start()
        atexit.register(self._at_exit)
        self._drain_on_sigterm()

    # -- what the server calls ---------------------------------------------------------

    def adopt_handlers(self) -> None:
        """Move handlers attached since the last call (by the app, at import or in
        lifespan startup) behind the queue; keep the server's own loggers enabled
        even if the app's dictConfig disabled "existing loggers"."""
        _keep_server_loggers_enabled(self.options.access_log)
        if self._adopter is not None and self._queue is not None and self._queue.state == "open":
            self._adopter.adopt_all()

    def shutdown(self, timeout: float | None = None) -> None:
        """Drain the queue within `timeout` (default: options.drain_timeout). Idempotent.

        What could not be written by then is counted on stderr, and later
        records are counted and discarded (the sink is stuck). After a full
        drain, handlers are put back and logging is synchronous again.
        """
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._at_exit)
        self._restore_sigterm()
        if self._queue is None or self._adopter is None:
            return
        deadline = self.options.drain_timeout if timeout is None else timeout
        undelivered, notices = self._queue.close(deadline)
        lines = [f"{text}\n" for text in notices]
        if undelivered:
            noun = "record" if undelivered == 1 else "records"
            lines.append(
                f"steadyloop: {undelivered} log {noun} could not be written within "
                f"{deadline:g} s at shutdown (the log sink was blocked)\n"
            )
        totals = _totals_line(self._queue.lost(), self._queue.dropped())
        if totals:
            lines.append(totals)
        if lines:
            write_without_blocking(2, "".join(lines))
        if self._queue.state == CLOSED:
            self._adopter.release_all()

    def dropped(self) -> dict[str, int]:
        """Records dropped because the queue was full, per level name, since start."""
        return self._queue.dropped() if self._queue is not None else {}

    def lost(self) -> int:
        """Records accepted but never written (write errors, shutdown deadline)."""
        return self._queue.lost() if self._queue is not None else 0

    def pending(self) -> int:
        """Records accepted and not yet written."""
        return self._queue.pending() if self._queue is not None else 0

    @property
    def access_put(self) -> PutFn | None:
        """The queue's put(), for the access log; None when logging is synchronous."""
        return self._queue.put if self._queue is not None else None

    # -- internals -----------------------------------------------------------------------

    def _on_writer_tick(self) -> None:
        # On the writer thread, about once a second: catch handlers that were put
        # straight into a `handlers` list, bypassing addHandler.
        if self._adopter is not None:
            self._adopter.adopt_all()

    def _at_exit(self) -> None:
        self.shutdown()

    def _drain_on_sigterm(self) -> None:
        """Without a SIGTERM handler the process dies at once and the queue with it.
        Where nobody handles SIGTERM, turn it into SystemExit so atexit drains.
        (The server installs its own handling and calls shutdown() itself.)"""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        self._previous_sigterm = signal.SIG_DFL
        signal.signal(signal.SIGTERM, _exit_on_sigterm)

    def _restore_sigterm(self) -> None:
        if self._previous_sigterm is None:
            return
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is _exit_on_sigterm
        ):
            signal.signal(signal.SIGTERM, self._previous_sigterm)
        self._previous_sigterm = None


def _totals_line(lost: int, dropped: dict[str, int]) -> str:
    """The process's log losses in one stderr line, or "" when nothing was lost."""
    if not lost and not dropped:
        return ""
    levels = ", ".join(f"{level} {count}" for level, count in sorted(dropped.items()))
    return (
        f"steadyloop: log records lost in this process: {lost} not written (write errors, "
        f"shutdown deadline), {sum(dropped.values())} dropped (queue full{': ' + levels if levels else ''})\n"
    )


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


_CURRENT: LogPipeline | None = None


def setup_logging(options: LogOptions) -> LogPipeline:
    """Configure logging for this process and start the pipeline. See the module doc."""
    global _CURRENT
    if _CURRENT is not None:
        _CURRENT.shutdown()
        _CURRENT = None
    logging.addLevelName(TRACE, "TRACE")
    _install_server_defaults(options)
    # Records no handler takes (an app that configured no logging) print as the server's do.
    logging.lastResort = fallback_handler(options.use_colors)
    renamed = load_config_file(options.config_file) if options.config_file else []
    logging.getLogger(SERVER_LOGGER).setLevel(level_number(options.level))
    _keep_server_loggers_enabled(options.access_log)
    pipeline = LogPipeline(options)
    pipeline.uvicorn_access = "uvicorn.access" in renamed
    pipeline.start()
    if renamed:
        logging.getLogger(ERROR_LOGGER).info(
            "--log-config: uvicorn's loggers %s configure steadyloop's %s",
            ", ".join(renamed),
            ", ".join(UVICORN_NAMES[name] for name in renamed),
        )
    _CURRENT = pipeline
    return pipeline


class LogLosses(NamedTuple):
    lost: int  # accepted but never written: write errors, the shutdown deadline
    dropped: dict[str, int]  # refused because the queue was full, per level name


def log_losses() -> LogLosses:
    """This process's log losses since its logging was set up (zeros when synchronous)."""
    pipeline = _CURRENT
    if pipeline is None:
        return LogLosses(0, {})
    return LogLosses(pipeline.lost(), pipeline.dropped())


def level_number(name: str) -> int:
    if name.lower() == "trace":
        return TRACE
    number = logging.getLevelName(name.upper())
    if not isinstance(number, int):
        raise ConfigError(f"unknown log level {name!r}")
    return number


def load_config_file(path: str) -> list[str]:
    """Apply a logging config: .json / .yaml / .yml as dictConfig, anything else as INI.

    uvicorn's logger names in it are taken as steadyloop's (observe/logcompat.py);
    returns those it renamed."""
    lowered = path.lower()
    try:
        if lowered.endswith((".json", ".yaml", ".yml")):
            with open(path, encoding="utf-8") as f:
                if lowered.endswith(".json"):
                    config = json.load(f)
                else:
                    import yaml  # only needed for YAML configs

                    config = yaml.safe_load(f)
            renamed = rename_dict_loggers(config)
            logging.config.dictConfig(config)
        else:
            parser = configparser.ConfigParser()
            if not parser.read(path, encoding="utf-8"):
                raise FileNotFoundError(f"cannot read {path}")
            renamed = rename_ini_loggers(parser)
            logging.config.fileConfig(parser, disable_existing_loggers=False)
    except Exception as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"--log-config {path}: {detail}") from exc
    return renamed


def _install_server_defaults(options: LogOptions) -> None:
    server = logging.getLogger(SERVER_LOGGER)
    access = logging.getLogger(ACCESS_LOGGER)
    defaults = (
        (server, _handler(options.error_file, sys.stderr), SERVER_FORMAT),
        (access, _handler(options.access_file, sys.stdout), ACCESS_FORMAT),
    )
    for lg, handler, fmt in defaults:
        for old in [h for h in lg.handlers if getattr(h, _DEFAULT_ATTR, False)]:
            lg.removeHandler(old)
            old.close()
        if fmt is SERVER_FORMAT:
            stream = getattr(handler, "stream", None)
            handler.setFormatter(ServerFormatter(wants_colours(options.use_colors, stream)))
        else:
            handler.setFormatter(logging.Formatter(fmt))
        setattr(handler, _DEFAULT_ATTR, True)
        lg.addHandler(handler)
        lg.propagate = False
    logging.getLogger(ERROR_LOGGER).propagate = True


def _handler(path: str | None, stream: Any) -> logging.Handler:
    if path is None or path == "-":
        return logging.StreamHandler(stream)
    try:
        # Reopened when logrotate moves the file away (a stat per record, on the writer thread).
        return logging.handlers.WatchedFileHandler(path, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot open log file {path}: {exc.strerror or exc}") from None


def _keep_server_loggers_enabled(access_log: bool) -> None:
    """dictConfig's disable_existing_loggers would silence the server; undo that."""
    manager = logging.Logger.manager
    for name, lg in list(manager.loggerDict.items()):
        if isinstance(lg, logging.Logger) and (name == SERVER_LOGGER or name.startswith(SERVER_LOGGER + ".")):
            lg.disabled = False
    logging.getLogger(ACCESS_LOGGER).disabled = not access_log
