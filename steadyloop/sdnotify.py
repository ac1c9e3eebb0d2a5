"""systemd's notify protocol (sd_notify): READY=1, STOPPING=1 and WATCHDOG=1 to NOTIFY_SOCKET.

With `Type=notify`, systemd starts a unit's dependants once the service says
READY=1, and with `WatchdogSec=` it restarts a service that stops sending
WATCHDOG=1. The protocol is a datagram of "KEY=value" lines on the unix
socket named by NOTIFY_SOCKET: a path, or "@name" for the abstract
namespace (a leading NUL). Nothing to link against, so it is written here.

Who sends what: the process systemd started (the supervisor with --workers,
else the one serving process). `from_environment()` takes NOTIFY_SOCKET,
WATCHDOG_USEC and WATCHDOG_PID out of the environment, as sd_notify's
unset_environment does, so workers and the app's own children never talk to
systemd in our name. WATCHDOG=1 goes out every WATCHDOG_USEC / 2, and only
while the event loops are healthy: from a timer on the one process's loop,
or by the supervisor while every ready worker's heartbeat is fresh. A stuck
loop stops the pings, and systemd restarts the service.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import MutableMapping


class Notifier:
    def __init__(self, address: str, watchdog_usec: int | None = None) -> None:
        # "@name": the abstract namespace, where the name starts with a NUL byte.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        # Seconds between WATCHDOG=1 pings (half of systemd's timeout), or None.
        self.watchdog_interval = watchdog_usec / 2_000_000 if watchdog_usec else None
        # Seconds a loop may go without a heartbeat and still count as healthy.
        self.watchdog_timeout = watchdog_usec / 1_000_000 if watchdog_usec else None
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.set_inheritable(False)

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None) -> Notifier | None:
        env = os.environ if environ is None else environ
        address = env.pop("NOTIFY_SOCKET", "")
        usec_text = env.pop("WATCHDOG_USEC", "")
        watchdog_pid = env.pop("WATCHDOG_PID", "")
        if not address.startswith(("/", "@")):
            return None  # unset, or a vsock address we do not speak
        usec = int(usec_text) if usec_text.isdigit() else None
        if watchdog_pid and watchdog_pid != str(os.getpid()):
            usec = None  # the watchdog is meant for another process
        return cls(address, usec)

    def send(self, *fields: str) -> None:
        """One datagram; a notify socket that went away must not stop the server."""
        with contextlib.suppress(OSError):
            self._sock.sendto("\n".join(fields).encode("utf-8"), self.address)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"MAINPID={os.getpid()}", f"STATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def close(self) -> None:
        self._sock.close()
