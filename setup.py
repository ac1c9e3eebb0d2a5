"""Build steadyloop, compiling the request hot path with mypyc where it can.

The package is pure Python and stays complete without this step: the modules below
are also shipped as .py files, and a compiled module (.so) next to its .py is what
Python imports first. So whenever compiling is not possible (mypyc missing, no C
compiler, a compile error) the build goes on without the extensions and installs the
pure-Python package, with a warning saying why. See docs/design.md, "The compiled build".

    pip install .                          compiled where a C compiler is found, else pure
    STEADYLOOP_PURE_PYTHON=1 pip install . pure Python, nothing compiled
    pip install -e .                       pure Python (edit and run, no rebuild; removes
                                           the .so files an in-place build left)
    STEADYLOOP_COMPILE=1 pip install -e .  compiled in place (rebuild after each edit)

Everything else about the package (metadata, dependencies, data files) is in pyproject.toml.
"""

from __future__ import annotations

import glob
import os
import sys
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

# The request hot path, by instructions per request (bench/instructions.py; docs/design.md
# lists the figures). Only these are compiled: elsewhere Python is not the wall, and every
# compiled module costs build time and loses Python frames in tracebacks and stack dumps.
HOT_MODULES = [
    "steadyloop/asgi/cycle.py",
    "steadyloop/http/parser.py",
    "steadyloop/http/response.py",
    "steadyloop/protocols/eager.py",
    "steadyloop/protocols/http1/connection.py",
    "steadyloop/protocols/http1/cycle.py",
    "steadyloop/protocols/http2/stream.py",
    "steadyloop/wsgi/exchange.py",
]

# mypy's options for the compile, on top of pyproject.toml's [tool.mypy]. The installed
# packages are not looked at (their types would be Any): the C generated then depends on
# steadyloop's source and the pinned mypy alone, not on what the build environment holds
# (an isolated build has no runtime dependencies; a developer's venv has all of them).
# Only the compiled modules' own errors stop the compile; `mypy` in CI checks the rest.
_MYPY_FLAGS = [
    "--no-site-packages",
    "--ignore-missing-imports",
    "--follow-imports=silent",
    "--cache-dir=build/mypyc-cache",
]


def _warn(message: str) -> None:
    # pip shows a build's output only with -v, or when the build fails; stderr and a banner
    # make the line easy to find in a CI log.
    print(f"\n*** steadyloop: {message}\n", file=sys.stderr, flush=True)


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _editable() -> bool:
    # PEP 660 (`pip install -e .`) runs the `editable_wheel` command; old pips run `develop`.
    return any(arg in ("editable_wheel", "develop") for arg in sys.argv[1:])


class OptionalBuildExt(build_ext):
    """build_ext whose failure leaves a pure-Python build instead of a failed install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # any compiler or toolchain error: fall back, say why
            self._drop_outputs()
            _warn(f"compiling the hot path with mypyc failed ({exc}); installing pure Python")

    def _drop_outputs(self) -> None:
        # mypyc's modules import one shared library: a half-built set would fail at import,
        # so none of them may be installed.
        for path in self.get_outputs():
            if os.path.exists(path):
                os.remove(path)
        self.extensions = []
        self.distribution.ext_modules = []


def _drop_inplace_extensions() -> None:
    """An editable install that does not compile (pure by choice, or compiling failed)
    removes compiled modules an earlier `STEADYLOOP_COMPILE=1 pip install -e .` left in the
    tree: Python imports a .so before the .py beside it, so they would run stale code in
    place of the edited sources."""
    here = os.path.dirname(os.path.abspath(__file__))
    stems = [os.path.join(here, module.removesuffix(".py")) for module in HOT_MODULES]
    stale = [path for stem in stems for path in glob.glob(stem + ".*.so")]
    stale += glob.glob(os.path.join(here, "steadyloop__mypyc.*.so"))
    for path in stale:
        os.remove(path)
    if stale:
        _warn(f"removed {len(stale)} compiled module(s) left in the tree by an earlier in-place build")


def _metadata_only() -> bool:
    # pip asks for the build requirements and the metadata before it builds; those steps
    # need no compiling, and mypyc's type check takes seconds each time.
    commands = [arg for arg in sys.argv[1:] if not arg.startswith("-")]
    return bool(commands) and commands[0] in ("egg_info", "dist_info", "sdist", "clean")


def _extensions() -> list[Any]:
    if _metadata_only():
        return []
    extensions = _compiled_extensions()
    if _editable() and not extensions:
        _drop_inplace_extensions()
    return extensions


def _compiled_extensions() -> list[Any]:
    if _flag("STEADYLOOP_PURE_PYTHON"):
        _warn("STEADYLOOP_PURE_PYTHON is set: building pure Python")
        return []
    if _editable() and not _flag("STEADYLOOP_COMPILE"):
        # An editable install is for working on the code: edits must take effect without a
        # rebuild, which compiled modules (preferred to the .py beside them) would prevent.
        return []
    if sys.implementation.name != "cpython":
        _warn(f"mypyc compiles for CPython only, not {sys.implementation.name}: building pure Python")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError as exc:
        _warn(f"mypyc is not available ({exc}); building pure Python")
        return []
    try:
        # One shared library for the group, named for the package (else a hash of the module
        # list): it installs at the top of site-packages as steadyloop__mypyc.*.so.
        return list(mypycify([*_MYPY_FLAGS, *HOT_MODULES], opt_level="3", group_name="steadyloop"))
    except (Exception, SystemExit) as exc:  # mypy reports type errors with SystemExit
        _warn(f"mypyc could not compile the hot path ({exc!r}); building pure Python")
        return []


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
