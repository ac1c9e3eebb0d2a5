"""wsgi.file_wrapper: a file as a response iterable, which the server may send with sendfile.

An app returns `environ["wsgi.file_wrapper"](file, block_size)` (Flask's
`send_file`, Django's `FileResponse` do). When the file is a regular file on
disk, opened at its start, steadyloop hands its path to the connection, which
sends it with sendfile(2): no bytes pass through Python. Anything else (a
BytesIO, a pipe, a file already partly read) is iterated in blocks.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from typing import Any


class FileWrapper:
    __slots__ = ("blksize", "filelike")

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        size = self.blksize
        while True:
            block = read(size)
            if not block:
                return
            yield block

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()

    def sendfile_path(self) -> tuple[str, int] | None:
        """(path, size) if the whole response is a regular file reachable by its name."""
        f = self.filelike
        name = getattr(f, "name", None)
        if isinstance(name, bytes):
            name = os.fsdecode(name)
        if not isinstance(name, str):
            return None  # an anonymous temporary file has an int for a name
        try:
            fd = f.fileno()
            if f.tell() != 0:
                return None
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            # The name must still lead to this very file (not renamed, not replaced).
            if not os.path.samestat(st, os.stat(name)):
                return None
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            return None
        return os.path.abspath(name), st.st_size
