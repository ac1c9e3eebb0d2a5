"""Listening sockets: made once (by the supervisor, or by a lone worker) and shared."""

from __future__ import annotations

import os
import socket
import stat

from steadyloop.config import Config, ConfigError


def bind_sockets(config: Config, *, reuse_port: bool = False, listen: bool = True) -> list[socket.socket]:
    """The listening sockets, or with `listen=False` bound only: the address is ours
    (a taken port fails here) but connections are refused until the server listens
    (asyncio's create_server does), so nobody connects to a process still booting."""
    backlog = config.backlog if listen else 0
    if config.fd is not None:
        sock = socket.socket(fileno=config.fd)
        sock.setblocking(False)
        return [sock]
    if config.uds is not None:
        return [_bind_unix(config.uds, backlog)]
    return [_bind_tcp(config.host, config.port, backlog, reuse_port)]


def _bind_tcp(host: str, port: int, backlog: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host.strip("[]"), port))
        if backlog:
            sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    sock.set_inheritable(True)
    return sock


def _bind_unix(path: str, backlog: int) -> socket.socket:
    if os.path.exists(path):
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            raise ConfigError(f"--uds {path} exists and is not a socket")
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o666)
        if backlog:
            sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {path}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    sock.set_inheritable(True)
    return sock


def describe(sock: socket.socket) -> str:
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name}"
    host, port = name[0], name[1]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"http://{host}:{port}"
