"""steadyloop as a gunicorn worker class, for teams that keep gunicorn as their supervisor.

    gunicorn -k steadyloop.integrations.gunicorn.SteadyloopWorker -w 4 -b 0.0.0.0:8000 myapp:app

gunicorn binds, forks, counts and replaces workers; each worker runs a whole
steadyloop server (its own loop, thread pool, non-blocking log pipeline and
watchdog) on gunicorn's listening sockets. What the worker honours of gunicorn:

- the heartbeat: `notify()` is called from a timer on the worker's event loop,
  so gunicorn's --timeout measures a stuck *loop*, not a stuck thread;
- --timeout's SIGABRT: faulthandler dumps every thread's stack to stderr
  (the stuck frame included), and gunicorn's SIGKILL follows;
- TERM: graceful stop within --graceful-timeout; INT and QUIT: the same, and a
  second INT or QUIT forces it (gunicorn calls these "quick shutdown"; its
  worker_int hook is not called);
- --max-requests / --max-requests-jitter: drain and exit, gunicorn replaces us;
- --keep-alive, --graceful-timeout, --limit-request-*, --forwarded-allow-ips,
  --threads (when above 1), --log-level;
- logging: the access log is written only when --access-logfile is set, to
  that file ("-": stdout), in --access-logformat (gunicorn's %(x)s atoms,
  translated to steadyloop's; one with no counterpart is refused by name);
  --error-logfile takes the server's records ("-", the default: stderr). Both
  go through steadyloop's non-blocking log queue, like every other record;
- USR1 reopens gunicorn's own log files (its handler); steadyloop's log files
  reopen by themselves once rotated away; a parent that changed (the master
  died) makes the worker stop.

Subclass and set `CONFIG_KWARGS` (steadyloop option names, as for
`steadyloop.run`) to change anything else, e.g. `{"loop": "asyncio"}`.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import logging
import os
import re
import signal
import sys
from typing import Any

from gunicorn.workers.base import Worker

from steadyloop.config import Config, ConfigError
from steadyloop.options import build_config
from steadyloop.server.serve import Server, serve_process

logger = logging.getLogger("steadyloop.error")

NOTIFY_PERIOD_MAX = 1.0  # seconds; gunicorn's --timeout is whole seconds


class SteadyloopWorker(Worker):  # type: ignore[misc]  # gunicorn has no type hints
    CONFIG_KWARGS: dict[str, Any] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        config = build_config(None, self._options())
        log = dataclasses.replace(config.log, access_file=self.cfg.accesslog, error_file=self.cfg.errorlog)
        self.config: Config = config.replace(log=log)

    def _options(self) -> dict[str, Any]:
        cfg = self.cfg
        options: dict[str, Any] = {
            "timeout_keep_alive": float(cfg.keepalive),  # 0 turns keep-alive off, as in gunicorn
            "timeout_graceful_shutdown": float(cfg.graceful_timeout),
            "log_level": str(cfg.loglevel).lower(),
            "access_log": cfg.accesslog is not None,
            "access_log_format": gunicorn_access_format(cfg.access_log_format),
            # gunicorn's 0 means "no limit"; ours must be a number: the largest head we allow.
            "limit_request_line": cfg.limit_request_line or 65536,
            "limit_request_fields": cfg.limit_request_fields or 32768,
            "limit_request_field_size": cfg.limit_request_field_size or 65536,
            "forwarded_allow_ips": _ips(cfg.forwarded_allow_ips),
        }
        if cfg.max_requests > 0:  # gunicorn's 0 means "no limit"
            options["max_requests"] = cfg.max_requests
            options["max_requests_jitter"] = cfg.max_requests_jitter
        if cfg.threads > 1:
            options["threads"] = cfg.threads
        options.update(self.CONFIG_KWARGS)
        return options

    # -- gunicorn's hooks ----------------------------------------------------------------------

    def init_signals(self) -> None:
        """Signals are the event loop's (serve_process installs TERM and INT there);
        gunicorn's own handlers would run Python code between bytecodes of a stuck loop."""
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGUSR1, self.handle_usr1)
        # gunicorn's --timeout sends SIGABRT before SIGKILL: faulthandler says where the
        # loop is stuck (every thread's stack, to stderr), then the worker dies of the
        # SIGABRT. (SIGABRT can only be had with enable(), which covers SIGSEGV & co too.)
        faulthandler.enable(file=2, all_threads=True)

    def run(self) -> None:
        config = self.config.replace(app=self.wsgi)
        sockets = [listener.sock for listener in self.sockets]
        code = serve_process(config, sockets, on_started=self._on_started, is_worker=True)
        if code:
            sys.exit(code)  # gunicorn reads 3 (startup failed) as "worker failed to boot"

    # -- inside the running worker --------------------------------------------------------------

    def _on_started(self, server: Server) -> None:
        loop = server.loop
        state = server.state
        assert loop is not None and state is not None
        period = min(NOTIFY_PERIOD_MAX, self.timeout / 4) if self.timeout else NOTIFY_PERIOD_MAX

        def beat() -> None:
            self.notify()  # from the loop itself: a stuck loop stops notifying
            if os.getppid() != self.ppid:
                logger.warning("worker %d: the gunicorn master is gone, shutting down", os.getpid())
                server.request_exit()
                return
            loop.call_later(period, beat)

        beat()

        # INT is the server's own (a second one forces); QUIT means the same to gunicorn.
        loop.add_signal_handler(signal.SIGQUIT, server.handle_signal, signal.SIGINT)


def _ips(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return tuple(str(v) for v in value)


# gunicorn's access-log atoms (its `%(name)s` keys) as steadyloop's Apache-style atoms.
_GUNICORN_ATOMS = {
    "h": "%h",
    "l": "%l",
    "u": "%u",
    "t": "%t",
    "r": "%r",
    "m": "%m",
    "U": "%U",
    "H": "%H",
    "s": "%s",
    "B": "%B",
    "b": "%b",
    "f": "%{Referer}i",
    "a": "%{User-Agent}i",
    "T": "%T",
    "D": "%D",
    "L": "%{s}T",
}
_GUNICORN_ATOM = re.compile(r"%\(([^)]*)\)s")


def gunicorn_access_format(fmt: str) -> str:
    """gunicorn's --access-logformat in steadyloop's format language."""

    def atom(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in _GUNICORN_ATOMS:
            return _GUNICORN_ATOMS[name]
        header = re.fullmatch(r"\{([^}]+)\}([io])", name)
        if header:
            return f"%{{{header.group(1)}}}{header.group(2)}"
        raise ConfigError(f"--access-logformat: gunicorn's %({name})s has no steadyloop counterpart")

    literal = fmt.replace("%%", "\0")
    return _GUNICORN_ATOM.sub(atom, literal).replace("\0", "%%")
