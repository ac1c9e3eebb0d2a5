"""Which build is running: the hot path compiled with mypyc, or pure Python.

setup.py compiles the modules below when it can (docs/design.md, "The compiled build");
a compiled module is an extension module (.so) beside its .py, and Python imports it
first. `steadyloop --version` says which build this is.
"""

from __future__ import annotations

import importlib
from importlib.machinery import EXTENSION_SUFFIXES

# Keep in step with HOT_MODULES in setup.py (a test compares them).
HOT_MODULES = (
    "steadyloop.asgi.cycle",
    "steadyloop.http.parser",
    "steadyloop.http.response",
    "steadyloop.protocols.eager",
    "steadyloop.protocols.http1.connection",
    "steadyloop.protocols.http1.cycle",
    "steadyloop.protocols.http2.stream",
    "steadyloop.wsgi.exchange",
)


def compiled_modules() -> list[str]:
    """The hot modules this process runs compiled."""
    suffixes = tuple(EXTENSION_SUFFIXES)
    return [
        name
        for name in HOT_MODULES
        if str(getattr(importlib.import_module(name), "__file__", "")).endswith(suffixes)
    ]


def describe() -> str:
    """ "compiled (mypyc)", "pure Python", or which modules are compiled if only some are
    (a build mixed by hand: setup.py installs all of them or none)."""
    compiled = compiled_modules()
    if len(compiled) == len(HOT_MODULES):
        return "compiled (mypyc)"
    if not compiled:
        return "pure Python"
    return "partly compiled (mypyc): " + ", ".join(compiled)
