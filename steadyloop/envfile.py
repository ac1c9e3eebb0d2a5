"""--env-file: KEY=VALUE lines into the environment, before options are read.

The format is the common "dotenv" one (what uvicorn's --env-file, Docker's
--env-file and systemd's EnvironmentFile= read), kept to what they agree on:

    # a comment                  blank lines and comments are skipped
    NAME=value                   whitespace around NAME and value is stripped
    export NAME=value            "export " is allowed, so the file can be sourced
    NAME="a value # not a comment"   quotes keep spaces and '#'; double quotes
    NAME='literal $HOME'         understand \\n and \\"; nothing is interpolated

A variable already in the environment wins over the file (like uvicorn's), so
a deployment can override one value without editing the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping

from steadyloop.config import ConfigError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def read_env_file(path: str) -> dict[str, str]:
    """The variables of a dotenv file, in file order; ConfigError names the bad line."""
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except OSError as exc:
        raise ConfigError(f"--env-file {path}: {exc.strerror or exc}") from None
    found: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("export "):
            text = text[len("export ") :].lstrip()
        name, equals, value = text.partition("=")
        name = name.strip()
        if not equals or not _NAME.match(name):
            raise ConfigError(f"--env-file {path}:{number}: expected NAME=value, not {line.strip()!r}")
        found[name] = _value(value.strip(), f"{path}:{number}")
    return found


def _value(raw: str, where: str) -> str:
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        end = raw.find(quote, 1)
        while quote == '"' and end > 0 and raw[end - 1] == "\\":
            end = raw.find(quote, end + 1)
        if end < 0:
            raise ConfigError(f"--env-file {where}: unterminated {quote} quote")
        inner = raw[1:end]
        if quote == '"':
            inner = inner.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        return inner
    # Unquoted: a '#' after whitespace starts a comment.
    return re.split(r"\s+#", raw, maxsplit=1)[0].rstrip()


def load_env_file(path: str, environ: MutableMapping[str, str] | None = None) -> None:
    """Put the file's variables into `environ` (os.environ) where they are not set yet."""
    target = os.environ if environ is None else environ
    for name, value in read_env_file(path).items():
        target.setdefault(name, value)
