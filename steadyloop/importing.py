"""From "module:attribute" to a callable app, and which interface it speaks.

ASGI 3: app(scope, receive, send), a coroutine function (or an object whose
        __call__ is one)
ASGI 2: app(scope) returning an object with `async __call__(receive, send)`
WSGI:   app(environ, start_response), a plain callable
"""

from __future__ import annotations

import importlib
import inspect
import linecache
import logging
import os
import sys
import traceback
from typing import Any

from steadyloop.asgi.types import ASGIApp, Receive, Scope, Send
from steadyloop.observe.stacks import FrameClassifier

logger = logging.getLogger("steadyloop.error")


class AppLoadError(Exception):
    """The app could not be imported or made.

    The message's first line says what failed; an error raised by the app's own
    code is followed by the app's frames of its traceback (the user's files, not
    the stdlib's, a package's or steadyloop's), so the failing line is there.
    """


def import_from_string(spec: str) -> Any:
    module_name, colon, attrs = spec.partition(":")
    if not colon or not module_name or not attrs:
        raise AppLoadError(f"app must be given as 'module:attribute', not {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # The app's own module (or a package above it) is missing, rather than something it
        # imports: "pkg.app" is missing when "pkg" or "pkg.app" is, not when "pk" is.
        if exc.name == module_name or module_name.startswith(f"{exc.name}."):
            raise AppLoadError(f"could not import module {module_name!r}: {exc}") from None
        raise AppLoadError(
            f"error while importing {module_name!r}: {type(exc).__name__}: {exc}{app_frames(exc)}"
        ) from exc
    except Exception as exc:
        raise AppLoadError(
            f"error while importing {module_name!r}: {type(exc).__name__}: {exc}{app_frames(exc)}"
        ) from exc
    obj: Any = module
    for attr in attrs.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise AppLoadError(f"attribute {attrs!r} not found in module {module_name!r}") from None
    return obj


def app_frames(exc: BaseException) -> str:
    """The app's frames of `exc`'s traceback, one indented line each (with the source
    line under it), outermost first; the innermost frame is added when it is not the
    app's, since that is where the error was raised. Empty when no frame is the app's."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"\n  {exc.filename}:{exc.lineno}"
    classifier = FrameClassifier()
    frames = traceback.extract_tb(exc.__traceback__)
    shown = [f for f in frames if classifier.is_app(f.filename)]
    if not shown:
        return ""
    if frames and frames[-1] is not shown[-1]:
        shown.append(frames[-1])
    lines = []
    for frame in shown:
        lines.append(f"  {classifier.display(frame.filename)}:{frame.lineno} in {frame.name}")
        source = linecache.getline(frame.filename, frame.lineno or 0).strip()
        if source:
            lines.append(f"    {source}")
    return "\n" + "\n".join(lines)


def load_app(app: Any, *, factory: bool = False, app_dir: str | None = None) -> Any:
    """Import (if a string) and build (if a factory) the application object."""
    if app_dir is not None:
        sys.path.insert(0, os.path.abspath(app_dir))
    elif "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if app is None:
        from steadyloop import demo

        return demo.app
    obj = import_from_string(app) if isinstance(app, str) else app
    if not factory and looks_like_factory(obj):
        # Called with (scope, receive, send), a factory fails every request with a 500.
        logger.warning(
            "APP %s takes no arguments, so it is taken for an app factory and called; "
            "pass --factory to say so",
            app if isinstance(app, str) else repr(app),
        )
        factory = True
    if factory:
        try:
            obj = obj()
        except Exception as exc:
            raise AppLoadError(f"app factory failed: {type(exc).__name__}: {exc}{app_frames(exc)}") from exc
    if not callable(obj):
        raise AppLoadError(f"app {app!r} is not callable")
    return obj


def looks_like_factory(obj: Any) -> bool:
    """A plain function that can be called with no arguments: no app interface fits it
    (ASGI apps take three, ASGI 2 one, WSGI two), so it can only be a factory."""
    if not inspect.isfunction(obj) or inspect.iscoroutinefunction(obj):
        return False
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return False
    return not any(
        p.kind is p.VAR_POSITIONAL
        or (p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty)
        for p in params
    )


def detect_interface(app: Any) -> str:
    """'asgi3', 'asgi2' or 'wsgi', from the shape of the callable."""
    if inspect.isclass(app):
        return "asgi2"  # ASGI 2 apps are typically classes instantiated per scope
    # For an instance, its bound __call__: `self` must not count as a parameter.
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else app.__call__
    if inspect.iscoroutinefunction(call):
        return "asgi3"
    try:
        params = [
            p
            for p in inspect.signature(call).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return "asgi3"
    if len(params) == 1:
        return "asgi2"
    if len(params) == 2:
        return "wsgi"
    return "asgi3"


def asgi2_to_asgi3(app: Any) -> ASGIApp:
    async def asgi3(scope: Scope, receive: Receive, send: Send) -> None:
        instance = app(scope)
        await instance(receive, send)

    return asgi3
