"""The writer thread's side: turning queued entries into bytes on their sinks.

An entry is either (handler, LogRecord) — a record a stand-in queued for its
real handler — or (source, payload) where the source (the access log) builds
the record here, off the event loop, and it goes to its logger's handlers.

Plain `StreamHandler`s and `FileHandler`s (the common case: stdout, stderr, a
file) are written in batches: the writer formats with the handler's own
formatter and appends the bytes to an `FdSink` for the stream's descriptor,
which writes whole records in atomic chunks. Any other handler (rotating
files, syslog, sockets, custom classes) gets its own `emit()` called here, so
whatever it does, it does on this thread.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from steadyloop.observe.logadopt import QueuedHandler, render_captured_exception
from steadyloop.observe.logqueue import Entry
from steadyloop.observe.logsink import FdSink, write_without_blocking

_StderrHandler: type[logging.Handler] = getattr(logging, "_StderrHandler", logging.StreamHandler)
# Exact types only: a subclass may override emit() (rotation, colours...), so it keeps its own.
_BATCHED_TYPES = frozenset({logging.StreamHandler, logging.FileHandler, _StderrHandler})


class Writer:
    """Formats and writes entries; used only by the writer thread (except `close`)."""

    def __init__(self) -> None:
        self._sinks: dict[int, FdSink] = {}  # fd -> sink, shared by handlers on one descriptor
        # id(handler) -> (handler, stream it had, its sink or None for "call emit()")
        self._routes: dict[int, tuple[logging.Handler, Any, FdSink | None]] = {}
        self._lost = 0
        self._index = 0  # the entry being written, within the current slice
        self._abandoned = False
        self._reported: set[int] = set()  # descriptors whose current failure was reported

    def write(self, entries: list[Entry]) -> int:
        self._lost = 0
        try:
            for index, (target, payload, _) in enumerate(entries):
                if self._abandoned:
                    return self._lost
                self._index = index
                if isinstance(target, logging.Handler):
                    self._to_handler(target, payload)
                else:
                    self._to_logger(target.logger, target.make_record(payload))
            self._index = len(entries)
            self._flush()
            return self._lost
        finally:
            self._index = 0

    def progress(self) -> int:
        """How many entries of the slice being written are completely written. Any thread."""
        done = self._index
        for sink in list(self._sinks.values()):
            first = sink.first_pending()
            if first is not None and first < done:
                done = first
        return done

    def abandon(self) -> None:
        """Stop writing as soon as the current write returns (shutdown deadline passed)."""
        self._abandoned = True
        for sink in list(self._sinks.values()):
            sink.abandoned = True

    def write_notice(self, target: Any, message: str) -> None:
        record = logging.LogRecord("steadyloop.error", logging.WARNING, __file__, 0, message, None, None)
        if isinstance(target, logging.Handler):
            self._to_handler(target, record)
        else:
            self._to_logger(target.logger, record)
        self._flush()

    # -- delivery --------------------------------------------------------------------

    def _to_logger(self, logger: logging.Logger, record: logging.LogRecord) -> None:
        """What Logger.callHandlers does, with stand-ins resolved to their targets."""
        if logger.disabled or not logger.filter(record):
            return
        current: logging.Logger | None = logger
        while current is not None:
            for handler in current.handlers:
                if record.levelno < handler.level:
                    continue
                if isinstance(handler, QueuedHandler):
                    real = handler.target
                    if not real.filters or real.filter(record):
                        self._to_handler(real, record)
                else:
                    handler.handle(record)
            current = current.parent if current.propagate else None

    def _to_handler(self, handler: logging.Handler, record: logging.LogRecord) -> None:
        render_captured_exception(record)
        sink = self._sink_for(handler)
        if sink is None:
            handler.acquire()
            try:
                handler.emit(record)  # reports its own errors through handleError
            finally:
                handler.release()
            return
        try:
            text = handler.format(record) + getattr(handler, "terminator", "\n")
        except Exception:
            handler.handleError(record)
            return
        self._lost += sink.add(text.encode(sink.encoding, "backslashreplace"), self._index)
        self._check(sink)

    def _sink_for(self, handler: logging.Handler) -> FdSink | None:
        if type(handler) not in _BATCHED_TYPES:
            return None
        stream = getattr(handler, "stream", None)
        if stream is None:  # a FileHandler with delay=True: its emit() opens the file
            return None
        route = self._routes.get(id(handler))
        if route is not None and route[0] is handler and route[1] is stream:
            return route[2]
        sink: FdSink | None
        try:
            fd = stream.fileno()
        except Exception:  # io.StringIO and friends: no descriptor, let emit() write
            sink = None
        else:
            with contextlib.suppress(Exception):
                # Whatever the stream buffered before we took over goes out first.
                stream.flush()
            sink = self._sinks.get(fd)
            if sink is None:
                encoding = getattr(stream, "encoding", None) or "utf-8"
                sink = self._sinks[fd] = FdSink(fd, encoding)
                sink.abandoned = self._abandoned
        self._routes[id(handler)] = (handler, stream, sink)
        return sink

    def _flush(self) -> None:
        for sink in self._sinks.values():
            self._lost += sink.flush()
            self._check(sink)

    def _check(self, sink: FdSink) -> None:
        if sink.error is not None:
            self._report_broken(sink)
        elif sink.recovered is not None:
            self._report_recovered(sink)

    def _report_broken(self, sink: FdSink) -> None:
        """Say once per failure, on stderr, that a descriptor refuses writes (a full disk, a
        reader that is gone)."""
        if sink.fd in self._reported:
            return
        self._reported.add(sink.fd)
        write_without_blocking(
            2,
            f"steadyloop: cannot write log records to fd {sink.fd} ({sink.error}); "
            "records for it are counted as lost while retrying\n",
        )

    def _report_recovered(self, sink: FdSink) -> None:
        """Say once, in the sink that works again, what was lost while it did not."""
        assert sink.recovered is not None
        error, lost = sink.recovered
        sink.recovered = None
        self._reported.discard(sink.fd)
        noun = "record was" if lost == 1 else "records were"
        text = (
            f"steadyloop: log writes to fd {sink.fd} work again; {lost} log {noun} lost "
            f"while they failed ({error})\n"
        )
        self._lost += sink.add(text.encode(sink.encoding, "backslashreplace"))
        self._lost += sink.flush()
