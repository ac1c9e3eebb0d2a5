"""The command line: flags (and STEADYLOOP_* variables) -> Config -> run.

Errors a user can fix (a bad option, an app that does not import) print one
line and exit non-zero; no traceback wall.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any, NoReturn

from steadyloop import __version__
from steadyloop.config import ConfigError
from steadyloop.options import OPTIONS, Option, build_config, parse_env
from steadyloop.stdfds import ensure_standard_fds

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other usage error; argparse's default prints the whole usage
        # (thirty lines for this many options) before it.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="steadyloop",
        description=(
            "Serve an ASGI or WSGI app over HTTP/1.1. With no APP, serves the built-in demo app "
            "(/async, /sync, /health). Every option can also be set as STEADYLOOP_<NAME>, "
            "e.g. STEADYLOOP_PORT=9000."
        ),
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument(
        "app", nargs="?", metavar="APP", help="the app as module:attribute (default: the demo app)"
    )
    parser.add_argument("--version", action="version", version=f"steadyloop {__version__}")
    for option in OPTIONS:
        dest = option.name
        if option.kind == "switch":
            parser.add_argument(
                option.flag, dest=dest, action=argparse.BooleanOptionalAction, help=option.help
            )
        elif option.kind == "flag":
            parser.add_argument(option.flag, dest=dest, action="store_true", help=option.help)
        elif option.kind == "many":
            parser.add_argument(
                option.flag,
                dest=dest,
                action="append",
                type=_typed(option.parse),
                help=option.help,
                metavar=option.metavar,
            )
        else:
            parser.add_argument(
                option.flag,
                dest=dest,
                type=_typed(option.parse),
                choices=option.choices,
                help=option.help,
                metavar=_metavar(option),
            )
    return parser


def _metavar(option: Option) -> str | None:
    if option.metavar or option.choices:
        return option.metavar
    if option.parse is int:
        return "N"
    if option.help.find("seconds") != -1 or option.name.startswith("timeout_"):
        return "SECONDS"
    return option.name.upper()


def _typed(parse: Any) -> Any:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = getattr(parse, "__name__", "value").lstrip("_")
    return convert


def main(argv: Sequence[str] | None = None) -> None:
    ensure_standard_fds()  # before anything opens a descriptor that could take fd 0-2
    code = run_cli(argv)
    if _stuck_threads():
        # A sync job that never returns would keep the interpreter from exiting (thread pools
        # join their threads at exit). Shutdown is done and the logs are drained: leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _stuck_threads() -> list[threading.Thread]:
    main_thread = threading.main_thread()
    return [t for t in threading.enumerate() if t is not main_thread and not t.daemon and t.is_alive()]


def run_cli(argv: Sequence[str] | None = None) -> int:
    args = vars(make_parser().parse_args(argv))
    app = args.pop("app", None)
    try:
        values: dict[str, Any] = parse_env(os.environ)
        if app is None:
            app = os.environ.get("STEADYLOOP_APP") or None
        values.update(args)
        config = build_config(app, values)
    except ConfigError as exc:
        print(f"steadyloop: error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    from steadyloop.main import run_config

    return run_config(config)
