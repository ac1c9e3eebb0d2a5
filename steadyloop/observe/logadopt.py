"""Moving logging handlers behind the queue: the stand-in handler and adoption.

Every handler on every logger (and `logging.lastResort`) is replaced, in place
in its logger's list, by a `QueuedHandler` that stands for it. When a logger
calls the stand-in, it runs the real handler's filters (on the calling thread,
so filters that read context variables still see the request's context),
captures the record and queues it. The writer thread later formats the record
with the real handler's formatter and writes it.

Capturing means: the message is rendered with its args now (later mutation of
an arg cannot change what is written), and an exception is captured as a
`traceback.TracebackException` (cheap: no source lines are read on the calling
thread; the writer renders it). `stack_info` is already text.

Handlers are found three ways: all at once by `adopt_all()` (the server calls
it after importing the app and after lifespan startup); as they are added, by a
hook on `logging.Logger.addHandler`; and by a periodic scan on the writer
thread for handlers put straight into a `handlers` list.

A handler opts out by setting `handler.steadyloop_sync = True` before it is
attached: it then writes on the calling thread, as stock logging does.
`NullHandler` and `QueueHandler` are left alone (nothing to gain).
"""

from __future__ import annotations

import logging
import logging.handlers
import threading
import traceback
from typing import Any

from steadyloop.observe.logqueue import LogQueue

SYNC_ATTR = "steadyloop_sync"
EXC_KEY = "_steadyloop_exc"

_LOGGING_LOCK: Any = getattr(logging, "_lock")  # noqa: B009  the module lock guarding handler lists
_ORIGINAL_ADD_HANDLER = logging.Logger.addHandler
_NEVER_WRAP = (logging.NullHandler, logging.handlers.QueueHandler)
_BASE_FORMAT_EXCEPTION = logging.Formatter.formatException
# Estimated queue cost of a record beyond its message text.
RECORD_OVERHEAD = 256
EXC_ESTIMATE = 4096


class QueuedHandler(logging.Handler):
    """Stands in a logger's handler list for `target`; queues instead of writing.

    Level, name, formatter and filters read and write through to the target, so
    code that configures "the handlers of the root logger" still configures the
    real ones. Equality with the target makes `target in logger.handlers` and
    `logger.removeHandler(target)` behave as if the target were still there.
    """

    def __init__(self, target: logging.Handler, queue: LogQueue) -> None:
        # Handler.__init__ is skipped on purpose: it would register the stand-in
        # for logging.shutdown() and give it its own level and filters.
        self.target = target
        self._queue = queue
        self.lock = None

    # -- attributes that belong to the target ---------------------------------------

    @property
    def level(self) -> int:
        return self.target.level

    @level.setter
    def level(self, value: int) -> None:
        self.target.level = value

    @property
    def filters(self) -> list[Any]:
        return self.target.filters

    @filters.setter
    def filters(self, value: list[Any]) -> None:
        self.target.filters = value

    @property
    def formatter(self) -> logging.Formatter | None:
        return self.target.formatter

    @formatter.setter
    def formatter(self, value: logging.Formatter | None) -> None:
        self.target.formatter = value

    @property
    def name(self) -> str | None:
        return self.target.name

    @name.setter
    def name(self, value: str | None) -> None:
        self.target.name = value

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        self.target.setFormatter(fmt)

    def __getattr__(self, attr: str) -> Any:
        # Only reached for attributes the stand-in lacks (`stream`, `baseFilename`...).
        if attr == "target":
            raise AttributeError(attr)
        return getattr(self.target, attr)

    def __eq__(self, other: object) -> bool:
        if other is self or other is self.target:
            return True
        return isinstance(other, QueuedHandler) and other.target is self.target

    __hash__ = logging.Handler.__hash__

    def __repr__(self) -> str:
        return f"<QueuedHandler for {self.target!r}>"

    # -- the hot path --------------------------------------------------------------------

    def handle(self, record: logging.LogRecord) -> bool:
        target = self.target
        if target.filters:
            rv: Any = target.filter(record)
            if not rv:
                return False
            if isinstance(rv, logging.LogRecord):  # 3.12+: a filter may return a new record
                record = rv
        size = capture(record, target)
        if not self._queue.put(target, record, record.levelno, record.levelname, size):
            # The queue is not running (closed after a drain, or a forked child): stock behaviour.
            target.handle(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        size = capture(record, self.target)
        if not self._queue.put(self.target, record, record.levelno, record.levelname, size):
            self.target.acquire()
            try:
                self.target.emit(record)
            finally:
                self.target.release()

    def flush(self) -> None:
        # Never on the caller's thread: a flush would wait for the sink.
        pass

    def close(self) -> None:
        self.target.close()

    def acquire(self) -> None:
        pass

    def release(self) -> None:
        pass

    def createLock(self) -> None:
        self.lock = None


def capture(record: logging.LogRecord, target: logging.Handler) -> int:
    """Freeze what the writer will need later; returns the record's estimated size.

    Idempotent: a record passed to several handlers is captured once.
    """
    msg = record.msg
    if record.args or type(msg) is not str:
        try:
            msg = record.msg = record.getMessage()
            record.args = None
        except Exception:
            # Leave it: the writer fails the same way and reports it through
            # handleError, on its own thread.
            return RECORD_OVERHEAD
    size = len(msg) + RECORD_OVERHEAD
    exc_info = record.exc_info
    if exc_info and not record.exc_text and EXC_KEY not in record.__dict__:
        fmt = target.formatter
        if (fmt is not None and type(fmt).formatException is not _BASE_FORMAT_EXCEPTION) or (
            exc_info[1] is None
        ):
            # A formatter with its own traceback rendering: honour it, here.
            record.exc_text = (fmt or logging.Formatter()).formatException(exc_info)
        else:
            record.__dict__[EXC_KEY] = traceback.TracebackException(
                exc_info[0], exc_info[1], exc_info[2], lookup_lines=False
            )
        size += EXC_ESTIMATE
    if record.stack_info:
        size += len(record.stack_info)
    return size


def render_captured_exception(record: logging.LogRecord) -> None:
    """On the writer thread: turn a captured traceback into the text Formatter appends."""
    te = record.__dict__.pop(EXC_KEY, None)
    if te is not None and not record.exc_text:
        text = "".join(te.format())
        record.exc_text = text[:-1] if text.endswith("\n") else text


def wants_queue(handler: logging.Handler) -> bool:
    return not (isinstance(handler, (QueuedHandler, *_NEVER_WRAP)) or getattr(handler, SYNC_ATTR, False))


class Adopter:
    """Finds handlers and puts stand-ins in their place; can put them all back."""

    def __init__(self, queue: LogQueue) -> None:
        self._queue = queue
        self._standins: dict[int, QueuedHandler] = {}  # id(target) -> its one stand-in
        self._guard = threading.Lock()
        self._last_resort: logging.Handler | None = None

    def standin(self, handler: logging.Handler) -> logging.Handler:
        """The handler to put in a list in place of `handler` (itself if it stays synchronous)."""
        if not wants_queue(handler):
            return handler
        with self._guard:
            found = self._standins.get(id(handler))
            if found is None or found.target is not handler:
                found = self._standins[id(handler)] = QueuedHandler(handler, self._queue)
            return found

    def adopt_all(self) -> int:
        """Replace every queue-worthy handler on every logger. Returns how many were moved."""
        moved = 0
        with _LOGGING_LOCK:
            for lg in _all_loggers():
                handlers = lg.handlers
                for i, handler in enumerate(handlers):
                    if wants_queue(handler):
                        handlers[i] = self.standin(handler)
                        moved += 1
            last = logging.lastResort
            if last is not None and wants_queue(last):
                self._last_resort = last
                logging.lastResort = self.standin(last)
        return moved

    def install_hook(self) -> None:
        global _ACTIVE
        _ACTIVE = self
        setattr(logging.Logger, "addHandler", _add_handler)  # noqa: B010

    def release_all(self) -> None:
        """Put every real handler back where its stand-in is; remove the hook."""
        global _ACTIVE
        with _LOGGING_LOCK:
            if _ACTIVE is self:
                _ACTIVE = None
                setattr(logging.Logger, "addHandler", _ORIGINAL_ADD_HANDLER)  # noqa: B010
            for lg in _all_loggers():
                handlers = lg.handlers
                for i, handler in enumerate(handlers):
                    if isinstance(handler, QueuedHandler) and handler._queue is self._queue:
                        handlers[i] = handler.target
            last = logging.lastResort
            if isinstance(last, QueuedHandler) and last._queue is self._queue:
                logging.lastResort = last.target


_ACTIVE: Adopter | None = None


def _add_handler(self: logging.Logger, hdlr: logging.Handler) -> None:
    adopter = _ACTIVE
    if adopter is not None:
        hdlr = adopter.standin(hdlr)
    _ORIGINAL_ADD_HANDLER(self, hdlr)


def _all_loggers() -> list[logging.Logger]:
    """The root logger and every logger made so far (placeholders are not loggers)."""
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers.extend(lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger))
    return loggers
