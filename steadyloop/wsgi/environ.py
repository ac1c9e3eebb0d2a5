"""The PEP 3333 environ for one request, from its ASGI scope.

Strings in the environ are "native strings" that carry bytes: text from the
request is decoded as latin-1, so every byte maps to one character. The
path is percent-decoded first and then, per PEP 3333, given as the latin-1
decoding of its UTF-8 bytes: `/café` arrives as `PATH_INFO = "/caf\\xc3\\xa9"`,
which is what Flask, Django and werkzeug expect (they re-encode it as latin-1
and decode UTF-8 themselves).

Request headers become HTTP_* variables, except Content-Type and
Content-Length (CONTENT_TYPE, CONTENT_LENGTH). Repeated headers are joined
with "," (Cookie with "; "). A header whose name contains "_" is dropped, as
nginx and gunicorn do: `X_Forwarded_For` would otherwise land in the same
variable as `X-Forwarded-For` and let a client spoof what a proxy set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from steadyloop.wsgi.errors import ErrorStream
from steadyloop.wsgi.filewrapper import FileWrapper
from steadyloop.wsgi.input import EMPTY, InputStream

_DEFAULT_PORTS = {"http": "80", "https": "443"}

# Header name -> environ key, or "" for headers that are dropped. Bounded: a client
# sending endless distinct names must not grow it forever.
_KEYS: dict[bytes, str] = {
    b"content-type": "CONTENT_TYPE",
    b"content-length": "CONTENT_LENGTH",
}
_KEYS_LIMIT = 1024


def _key(name: bytes) -> str:
    key = "" if b"_" in name else "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
    if len(_KEYS) < _KEYS_LIMIT:
        _KEYS[name] = key
    return key


def _native(text: str) -> str:
    """A decoded path as PEP 3333 wants it: the latin-1 reading of its UTF-8 bytes."""
    return text if text.isascii() else text.encode("utf-8").decode("latin-1")


# The keys that are the same for every request to one address over one scheme, under one
# root path, in one HTTP version, built once and copied per request. Bounded like _KEYS:
# listening addresses, schemes and versions are few.
_BaseKey = tuple[Any, str, str, str, bool]  # server, scheme, root_path, http_version, multiprocess
_BASES: dict[_BaseKey, dict[str, Any]] = {}
_BASES_LIMIT = 64
_PROTOCOLS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0", "2": "HTTP/2"}


def _base(key: _BaseKey) -> dict[str, Any]:
    server, scheme, root_path, version, multiprocess = key
    base = {
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.multithread": True,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
        "wsgi.input_terminated": True,
        "SCRIPT_NAME": _native(root_path) if root_path else "",
        "SERVER_PROTOCOL": _PROTOCOLS.get(version) or "HTTP/" + version,
    }
    if scheme == "https":
        base["HTTPS"] = "on"
    if server and server[1] is not None:
        base["SERVER_NAME"], base["SERVER_PORT"] = server[0], str(server[1])
    if len(_BASES) < _BASES_LIMIT:
        _BASES[key] = base
    return base


def build_environ(
    scope: Mapping[str, Any],
    read_chunk: Callable[[], tuple[bytes, bool]],
    *,
    multiprocess: bool = False,
) -> dict[str, Any]:
    root_path: str = scope.get("root_path", "")
    path: str = scope["path"]
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]  # ASGI's path includes root_path; WSGI splits them
    scheme: str = scope.get("scheme", "http")
    server = scope.get("server")
    key = (server, scheme, root_path, scope.get("http_version", "1.1"), multiprocess)
    base = _BASES.get(key)
    environ = (base if base is not None else _base(key)).copy()
    environ["REQUEST_METHOD"] = scope["method"]
    environ["PATH_INFO"] = path if path.isascii() else _native(path)
    query: bytes = scope.get("query_string", b"")
    environ["QUERY_STRING"] = query.decode("latin-1") if query else ""
    environ["wsgi.errors"] = ErrorStream()
    has_body = False
    keys = _KEYS
    for name, value in scope["headers"]:
        var = keys.get(name)
        if var is None:
            var = _key(name)
        if not var:
            continue  # a name with "_": dropped
        text = value.decode("latin-1")
        if var in environ:
            text = environ[var] + ("; " if var == "HTTP_COOKIE" else ",") + text
        elif var == "CONTENT_LENGTH":
            has_body = text.strip() != "0"
        elif var == "HTTP_TRANSFER_ENCODING":
            has_body = True
        environ[var] = text
    environ["wsgi.input"] = InputStream(read_chunk) if has_body else EMPTY

    if not server or server[1] is None:
        # A Unix socket (or no server address): the best name we have is the one the client used.
        host = environ.get("HTTP_HOST", "localhost")
        name, colon, port = host.rpartition(":") if host.rfind(":") > host.rfind("]") else ("", "", "")
        environ["SERVER_NAME"] = name if colon else host
        environ["SERVER_PORT"] = port if colon and port.isdigit() else _DEFAULT_PORTS.get(scheme, "80")
    client = scope.get("client")
    if client:
        environ["REMOTE_ADDR"] = client[0]
        environ["REMOTE_PORT"] = str(client[1])
    return environ
