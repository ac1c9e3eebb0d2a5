"""Errors of the ASGI layer.

Kept out of `steadyloop.asgi.cycle`, which may be compiled with mypyc: a compiled module
cannot define a subclass of OSError (docs/design.md, "The compiled build").
"""

from __future__ import annotations


class ClientDisconnected(OSError):
    """Raised by `send` once the client has gone away (ASGI spec 2.4)."""
