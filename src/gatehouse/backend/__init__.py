"""Key-value storage under every service: one interface, backends chosen by name."""

from __future__ import annotations

from pathlib import Path

from gatehouse.clock import Clock
from gatehouse.errors import BadParameter

from .base import (
    WATCH_QUEUE_SIZE,
    Backend,
    Event,
    EventType,
    Item,
    Watcher,
    Write,
    prefix_end,
)
from .etcd import EtcdBackend, EtcdSettings
from .memory import MemoryBackend
from .sqlite import SQLiteBackend

__all__ = [
    "KINDS",
    "WATCH_QUEUE_SIZE",
    "Backend",
    "EtcdBackend",
    "EtcdSettings",
    "Event",
    "EventType",
    "Item",
    "MemoryBackend",
    "SQLiteBackend",
    "Watcher",
    "Write",
    "open_backend",
    "prefix_end",
]

KINDS = ("memory", "sqlite", "etcd")


async def open_backend(kind: str, *, path: Path | None, clock: Clock,
                       etcd: EtcdSettings | None = None) -> Backend:
    """Open the backend named kind; sqlite stores its items in the file at path, etcd
    in the cluster etcd names."""
    if kind == "etcd":
        if etcd is None:
            raise BadParameter("the etcd backend needs its peers and prefix")
        return await EtcdBackend.open(etcd, clock=clock)
    if kind == "memory":
        return await MemoryBackend.open(clock=clock)
    if kind == "sqlite":
        if path is None:
            raise BadParameter("the sqlite backend needs a database path")
        return await SQLiteBackend.open(path, clock=clock)
    raise BadParameter(f"storage type {kind!r}: expected one of {', '.join(KINDS)}")
