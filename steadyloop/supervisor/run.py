"""`supervise(config)`: bind once, then run the supervisor until it is told to stop."""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

from steadyloop import __version__
from steadyloop.config import Config, ConfigError
from steadyloop.observe.metrics.listener import bind
from steadyloop.observe.words import counted
from steadyloop.sdnotify import Notifier
from steadyloop.server.sockets import bind_sockets, describe
from steadyloop.supervisor.arbiter import ChangeSource, Supervisor

logger = logging.getLogger("steadyloop.error")


def supervise(config: Config) -> int:
    """Serve with worker processes; returns the exit code for the process."""
    _check(config)
    pipeline = _setup_logging(config)
    sockets = None
    watcher: ChangeSource | None = None
    metrics_socket = None
    try:
        # Imported now so every forked worker has them already (faster boots);
        # importing starts no thread.
        import steadyloop.server.loops  # noqa: F401

        w = config.worker
        if not w.reuse_port:
            sockets = bind_sockets(config)
            where = ", ".join(describe(s) for s in sockets)
        else:
            where = f"http://{config.host}:{config.port} (SO_REUSEPORT, one socket per worker)"
        if w.reload:
            from steadyloop.supervisor.reload import FileWatcher, ReloadFilter

            flt = ReloadFilter.from_options(w.reload_includes, w.reload_excludes)
            watcher = FileWatcher(w.reload_dirs, flt, [s.fileno() for s in sockets or ()])
        logger.info(
            "steadyloop %s supervisor %d serving on %s with %s (Press CTRL+C to quit)",
            __version__,
            os.getpid(),
            where,
            counted(w.workers, "worker"),
        )
        if config.metrics.enabled:
            # Served by this process's select() loop, for every worker (see metrics_hub).
            metrics_socket = bind(config.metrics.address, config.metrics.port)
        supervisor = Supervisor(config, sockets, watcher, metrics_socket)
        supervisor.notifier = Notifier.from_environment()  # before the first fork
        return supervisor.run()
    finally:
        for sock in sockets or ():
            sock.close()
        if metrics_socket is not None:
            metrics_socket.close()
        if pipeline is not None:
            pipeline.shutdown(config.log.drain_timeout)


def _check(config: Config) -> None:
    w = config.worker
    if w.reuse_port:
        if config.uds is not None or config.fd is not None:
            raise ConfigError("--reuse-port works with --host/--port, not with --uds or --fd")
        if config.port == 0:
            raise ConfigError("--reuse-port needs a fixed --port: each worker binds its own socket")
    if w.reload and not isinstance(config.app, str) and config.app is not None:
        raise ConfigError("--reload needs the app as an import string ('module:attr'), not an object")


def _setup_logging(config: Config) -> Any:
    """The supervisor logs synchronously: a writer thread would make forking unsafe, and
    the supervisor has no event loop to protect; its few lines may wait for the sink."""
    options = dataclasses.replace(config.log, sync=True)
    try:
        from steadyloop.observe.logsetup import setup_logging  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        logging.basicConfig(level=options.level.upper(), format="%(levelname)s: %(message)s")
        return None
    return setup_logging(options)
