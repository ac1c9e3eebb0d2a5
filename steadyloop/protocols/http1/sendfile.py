"""os.sendfile on a pool thread, for http.response.pathsend over HTTP/1.1.

The file goes from the page cache to the socket without passing through
Python. It runs on the loop's default executor because sendfile blocks on a
socket the client drains slowly; the loop thread only awaits the result.
"""

from __future__ import annotations

import os
import select
import threading
import time

SENDFILE_CHUNK = 1024 * 1024


class SendfileJob:
    """os.sendfile on a pool thread, over duplicated descriptors that it closes itself.

    A client that takes nothing for `stall_limit` seconds (--timeout-write; 0: no limit)
    gives up its pool thread: the job raises TimeoutError.
    """

    def __init__(self, sock_fd: int, file_fd: int, size: int, stall_limit: float) -> None:
        self.sock_fd = sock_fd
        self.file_fd = file_fd
        self.size = size
        self.stall_limit = stall_limit or float("inf")
        self.stop = threading.Event()  # set when the request ends, whatever the reason

    def run(self) -> int:
        poller = select.poll()  # not select(): descriptors above 1024 are common in a busy worker
        poller.register(self.sock_fd, select.POLLOUT)
        offset = 0
        stalled_since = time.monotonic()
        try:
            while offset < self.size and not self.stop.is_set():
                try:
                    sent = os.sendfile(
                        self.sock_fd, self.file_fd, offset, min(self.size - offset, SENDFILE_CHUNK * 8)
                    )
                except BlockingIOError:
                    if time.monotonic() - stalled_since > self.stall_limit:
                        raise TimeoutError("write timeout: the client took no bytes") from None
                    poller.poll(250)  # milliseconds; short, so that `stop` is noticed
                    continue
                if sent == 0:
                    break  # the file is shorter than it was
                offset += sent
                stalled_since = time.monotonic()
            return offset
        finally:
            os.close(self.sock_fd)
            os.close(self.file_fd)
