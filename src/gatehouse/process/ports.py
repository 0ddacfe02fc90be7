"""Loopback ports for the processes the harness starts, picked where nothing else
takes them between the pick and the child's bind.

A port the kernel hands out for a bind to port 0 comes from the ephemeral range
(net.ipv4.ip_local_port_range: 32768-60999 here), the range every outgoing connection
takes its local port from. A test run makes thousands of connections, and one of them
took a proxy's port before the proxy bound it ("already in use", on CI). These ports
come from below that range, where the kernel never picks, in a slice of its own for
each pytest-xdist worker, taken in turn from a random start and checked free by a
bind.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["LOWEST", "free_ports"]

LOWEST = 10_000  # the lowest port handed out
_lock = threading.Lock()
_turn: Iterator[int] | None = None


def free_ports(count: int) -> list[int]:
    """``count`` different loopback ports that nobody listens on right now."""
    global _turn
    ports = _slice()
    with _lock:
        if _turn is None:
            start = random.randrange(len(ports))
            _turn = itertools.chain(ports[start:], itertools.cycle(ports))
        picked: list[int] = []
        for port in itertools.islice(_turn, len(ports)):  # one round of the slice at most
            if port not in picked and _bindable(port):
                picked.append(port)
                if len(picked) == count:
                    return picked
    raise OSError(f"no {count} free loopback ports below the ephemeral range")


def _slice() -> range:
    """This process's ports: its pytest-xdist worker's share of those below the
    ephemeral range (all of them outside pytest-xdist)."""
    try:
        top = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        top = 32_768  # Linux's default
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:]
    index = int(worker) if worker.isdigit() else 0
    size = max(1, (top - LOWEST) // workers)
    return range(LOWEST + index * size, LOWEST + (index + 1) * size)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
