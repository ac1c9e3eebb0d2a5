"""Proxy headers: which peers are trusted, and what X-Forwarded-* says about the client.

Shared by every protocol: a request arriving over HTTP/1.1, HTTP/2 or a
WebSocket handshake names its real client the same way.
"""

from __future__ import annotations

import ipaddress


class TrustedProxies:
    """--forwarded-allow-ips: addresses, networks, '*' for all, 'unix:' for socket peers."""

    def __init__(self, entries: tuple[str, ...]) -> None:
        self.all = "*" in entries
        self.hosts: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in entries:
            entry = entry.strip()
            if not entry or entry == "*":
                continue
            try:
                if "/" in entry:
                    self.networks.append(ipaddress.ip_network(entry, strict=False))
                else:
                    self.hosts.add(str(ipaddress.ip_address(entry)))
            except ValueError:
                self.hosts.add(entry)  # a literal such as "unix:"

    def contains(self, host: str | None) -> bool:
        if self.all:
            return True
        if host is None:
            return "unix:" in self.hosts
        if host in self.hosts:
            return True
        if self.networks:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                return False
            return any(address in net for net in self.networks)
        return False

    def forwarded(
        self, headers: list[tuple[bytes, bytes]], client: tuple[str, int] | None, scheme: str
    ) -> tuple[tuple[str, int] | None, str]:
        """(client, scheme) after X-Forwarded-For / -Proto sent by a trusted proxy."""
        for name, value in headers:
            if name == b"x-forwarded-proto":
                proto = value.decode("latin-1").strip().lower()
                if proto in ("http", "https", "ws", "wss"):
                    scheme = proto
            elif name == b"x-forwarded-for":
                # The nearest hop the trusted proxies did not add themselves.
                hops = [h.strip() for h in value.decode("latin-1").split(",") if h.strip()]
                chosen = None
                for hop in reversed(hops):
                    chosen = hop
                    if not self.contains(hop):
                        break
                if chosen is not None:
                    client = (chosen, 0)
        return client, scheme
