"""The exception a WSGI app's thread sees when its request is over.

Kept out of `steadyloop.wsgi.exchange`, which may be compiled with mypyc: a compiled module
cannot define a subclass of OSError (docs/design.md, "The compiled build").
"""

from __future__ import annotations


class Aborted(OSError):
    """The client went away or the server gave up on this request; raised in the app's thread."""
