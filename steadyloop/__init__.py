"""steadyloop: a fast, strict HTTP/1.1 server for ASGI and WSGI apps.

Its event loop never waits silently: logging never blocks it, and when app
code does, the server says where.
"""

from steadyloop.config import Config
from steadyloop.running import run

__version__ = "0.1.0"
__all__ = ["Config", "__version__", "run"]
