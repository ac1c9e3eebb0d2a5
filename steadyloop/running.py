"""From a Config to a running server: one process, or a supervisor with workers."""

from __future__ import annotations

import sys
from typing import Any

from steadyloop.config import Config, ConfigError
from steadyloop.envfile import load_env_file
from steadyloop.options import build_config
from steadyloop.pidfile import pid_file
from steadyloop.stdfds import ensure_standard_fds


def run_config(config: Config) -> int:
    """Serve until told to stop; returns the process exit code."""
    try:
        if config.env_file is not None:
            load_env_file(config.env_file)  # (the CLI has done so already; set variables win)
        with pid_file(config.pid_file):
            if config.worker.workers > 1 or config.worker.reload or config.worker.worker_timeout:
                from steadyloop.supervisor.run import supervise  # the supervisor never imports the app

                return supervise(config)
            from steadyloop.server.serve import serve_process

            return serve_process(config)
    except ConfigError as exc:
        print(f"steadyloop: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def run(app: Any = None, **options: Any) -> int:
    """Serve `app` (an object or "module:attr") with options named like the CLI flags.

    >>> steadyloop.run("myproject.asgi:app", port=9000, workers=2, access_log=False)
    """
    ensure_standard_fds()  # before anything opens a descriptor that could take fd 0-2
    return run_config(build_config(app, options))
