"""--pid-file: the serving process's id in a file, for init scripts and `kill -HUP $(cat ...)`.

Written when serving starts (by the supervisor with --workers, else by the
one process), replaced atomically, and removed at exit, but only if it still
names this process: a newer server may have taken the file over meanwhile.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from steadyloop.config import ConfigError


@contextlib.contextmanager
def pid_file(path: str | None) -> Iterator[None]:
    if path is None:
        yield
        return
    pid = os.getpid()
    temporary = f"{path}.{pid}.tmp"
    try:
        with open(temporary, "w", encoding="ascii") as file:
            file.write(f"{pid}\n")
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise ConfigError(f"--pid-file {path}: {exc.strerror or exc}") from None
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            with open(path, encoding="ascii") as file:
                still_ours = file.read().strip() == str(pid)
            if still_ours:
                os.unlink(path)
