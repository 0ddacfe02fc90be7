"""Can the daemon listen where its config says? Checked before it creates anything, so
that a second `gatehouse start` on ports in use fails in one line naming the key and
the port, and leaves no new cluster (CA, admin credentials) in a fresh data_dir."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

from gatehouse._sys.hostport import listen_error, split_host_port
from gatehouse.config import Config
from gatehouse.errors import BadParameter

__all__ = ["check_listen_addrs", "listen_addrs"]


def listen_addrs(cfg: Config) -> list[tuple[str, str]]:
    """(config key, address) of every listener the config enables."""
    sections = (("auth_service", cfg.auth_service), ("proxy_service", cfg.proxy_service),
                ("ssh_service", cfg.ssh_service))
    addrs = [(f"{name}.listen_addr", section.listen_addr)
             for name, section in sections
             if section.enabled and not (name == "ssh_service" and cfg.node_tunnel())]
    if cfg.gatehouse.diag_addr:
        addrs.append(("gatehouse.diag_addr", cfg.gatehouse.diag_addr))
    return addrs


def check_listen_addrs(cfg: Config, config_file: Path | None) -> None:
    """BadParameter for the first listener that cannot bind, naming ``config_file`` (or
    how to write one, when the daemon runs without)."""
    for key, addr in listen_addrs(cfg):
        try:
            _try_bind(addr)
        except OSError as exc:
            error = listen_error(key, addr, exc)
            if config_file is not None:
                raise BadParameter(f"{config_file}: {error}") from None
            if exc.errno == errno.EADDRINUSE:
                raise BadParameter(f"{error} in a config file (gatehouse start -c FILE)"
                                   ) from None
            raise error from None


def _try_bind(addr: str) -> None:
    """Bind (and release) every address ``addr`` stands for, as the listener will:
    SO_REUSEADDR, so a port left in TIME_WAIT is free, one that listens is not."""
    host, port = split_host_port(addr)
    for family, kind, proto, _, sockaddr in socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE):
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
