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
from .postgres import PostgresBackend
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
    "PostgresBackend",
    "SQLiteBackend",
    "Watcher",
    "Write",
    "open_backend",
    "prefix_end",
]

KINDS = ("memory", "sqlite", "postgres", "etcd")


async def open_backend(kind: str, *, path: Path | None, clock: Clock,
                       conn_string: str | None = None,
                       etcd: EtcdSettings | None = None) -> Backend:
    """Open the backend named kind; sqlite stores its items in the file at path,
    postgres in the database that conn_string names, etcd in the cluster etcd names."""
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
    if kind == "postgres":
        if not conn_string:
            raise BadParameter("the postgres backend needs a conn_string "
                               "(postgresql://USER@HOST:PORT/DATABASE)")
        return await PostgresBackend.open(conn_string, clock=clock)
    raise BadParameter(f"storage type {kind!r}: expected one of {', '.join(KINDS)}")
