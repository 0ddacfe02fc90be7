"""HAProxy (Debian's package, installed by scripts/setup.sh) in front of a cluster's
proxies, on a loopback port picked at run time."""

from __future__ import annotations

import contextlib
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

from gatehouse.process.harness import Process, free_ports

__all__ = ["start_haproxy"]


def start_haproxy(work: Path, config: Callable[[int], str]) -> tuple[str, Process]:
    """HAProxy running ``config(port)`` from ``work``; its address, once it accepts, and
    its process."""
    (port,) = free_ports(1)
    path = work / "haproxy.cfg"
    path.write_text(config(port))
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    process = Process("haproxy", [binary, "-db", "-f", str(path)], work / "haproxy.log",
                      cwd=work).start()

    def accepts() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return True
        return False

    process.wait_ready("its port open", accepts, timeout=15)
    return f"127.0.0.1:{port}", process
