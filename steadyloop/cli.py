"""The command line: flags (and STEADYLOOP_* variables) -> Config -> run.

Errors a user can fix (a bad option, an app that does not import) print one
line and exit non-zero; no traceback wall.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any, NoReturn

from steadyloop import __version__, build
from steadyloop.config import ConfigError
from steadyloop.envfile import load_env_file
from steadyloop.options import (
    GROUPS,
    Option,
    build_config,
    default_of,
    optional_seconds,
    parse_env,
    seconds,
    whole_number,
)
from steadyloop.stdfds import ensure_standard_fds

EXIT_USAGE = 2


# Flags of other servers, and what to type here instead.
FOREIGN_FLAGS = {
    "-w": "--workers N",
    "-b": "--host HOST --port PORT, or --uds PATH",
    "--bind": "--host HOST --port PORT, or --uds PATH",
    "-t": "--worker-timeout SECONDS",
    "--timeout": "--worker-timeout SECONDS",
    "--keep-alive": "--timeout-keep-alive SECONDS",
    "--keepalive": "--timeout-keep-alive SECONDS",
    "--graceful-timeout": "--timeout-graceful-shutdown SECONDS",
    "--access-logfile": "--access-log (to stdout) or --log-config FILE",
    "--error-logfile": "--log-config FILE",
    "--log-file": "--log-config FILE",
    "--pid": "--pid-file PATH",
    "--pidfile": "--pid-file PATH",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other usage error; argparse's default prints the whole usage
        # (thirty lines for this many options) before it.
        hint = self.hint(message)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}{hint} (see {self.prog} --help)\n")

    def hint(self, message: str) -> str:
        """For an unknown flag: the flag meant, if it is another server's or a near miss."""
        prefix = "unrecognized arguments: "
        if not message.startswith(prefix):
            return ""
        known = [flag for action in self._actions for flag in action.option_strings]
        for word in message[len(prefix) :].split():
            flag = word.partition("=")[0]
            if not flag.startswith("-"):
                continue
            if flag in FOREIGN_FLAGS:
                return f"; for {flag}, use {FOREIGN_FLAGS[flag]}"
            close = difflib.get_close_matches(flag, known, n=1, cutoff=0.75)
            if close:
                return f"; did you mean {close[0]}?"
        return ""


class _VersionAction(argparse.Action):
    """--version, with the build (compiled or pure): worked out only when asked, since it
    imports the hot-path modules."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> NoReturn:
        sys.stdout.write(f"steadyloop {__version__}, {build.describe()}\n")
        parser.exit()


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="steadyloop",
        usage="%(prog)s [OPTIONS] [APP]",
        description=(
            "Serve an ASGI or WSGI app over HTTP/1.1. With no APP, serves the built-in demo app\n"
            "(/async, /sync, /health). Every option can also be set as STEADYLOOP_<NAME>,\n"
            "e.g. STEADYLOOP_PORT=9000."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the guides' path must not wrap
        epilog=_guides(),
        argument_default=argparse.SUPPRESS,
        # No prefixes: "--timeout" is gunicorn's worker timeout, not an abbreviation of ours.
        allow_abbrev=False,
    )
    parser.add_argument(
        "app", nargs="?", metavar="APP", help="the app as module:attribute (default: the demo app)"
    )
    parser.add_argument(
        "--version", action=_VersionAction, nargs=0, help="show the version and build, then exit"
    )
    for title, options in GROUPS:
        group = parser.add_argument_group(title)
        for option in options:
            _add(group, option)
    return parser


def _guides() -> str:
    """Where the guides (docs/*.md) are: installed with the package, or in the source tree."""
    for where in (
        os.path.join(sys.prefix, "share", "doc", "steadyloop"),
        os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs"),
    ):
        if os.path.isfile(os.path.join(where, "logging.md")):
            return f"Guides (logging, watchdog, operations, deployment, WSGI): {where}"
    return "Guides: docs/*.md in steadyloop's source distribution."


def _add(group: argparse._ArgumentGroup, option: Option) -> None:
    text = _help(option)
    if option.kind == "switch":
        group.add_argument(option.flag, dest=option.name, action=argparse.BooleanOptionalAction, help=text)
    elif option.kind == "flag":
        group.add_argument(option.flag, dest=option.name, action="store_true", help=text)
    else:
        group.add_argument(
            option.flag,
            *option.aliases,
            dest=option.name,
            action="append" if option.kind == "many" else "store",
            type=_typed(option.parse),
            choices=option.choices,
            help=text,
            metavar=_metavar(option),
        )


def _help(option: Option) -> str:
    """The option's help with its default, as Config has it (flags are off by default)."""
    default = default_of(option)
    if option.kind == "flag" or default in (None, (), ""):
        return option.help
    if isinstance(default, bool):
        shown = "on" if default else "off"
    elif isinstance(default, tuple):
        shown = ",".join(str(part) for part in default)
    else:
        shown = f"{default:g}" if isinstance(default, float) else str(default)
    return f"{option.help} (default: {shown.replace('%', '%%')})"


def _metavar(option: Option) -> str | None:
    if option.metavar or option.choices:
        return option.metavar
    if option.parse is whole_number:
        return "N"
    if option.parse in (seconds, optional_seconds):
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
        env_file = args.get("env_file") or os.environ.get("STEADYLOOP_ENV_FILE")
        if env_file:
            load_env_file(env_file)  # before the STEADYLOOP_* variables are read: it may set them
        values: dict[str, Any] = parse_env(os.environ)
        if app is None:
            app = os.environ.get("STEADYLOOP_APP") or None
        values.update(args)
        config = build_config(app, values)
    except ConfigError as exc:
        print(f"steadyloop: error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    from steadyloop.running import run_config

    return run_config(config)
