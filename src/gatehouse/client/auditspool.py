"""A host's audit spool (a node's, a proxy's): events go to a local append-only file
before they go anywhere, so that none is lost while the auth is away.

``append`` writes a JSON line at once (a killed process loses nothing the OS
has; the sender fsyncs before each upload). The sender uploads in order and,
once the auth has acknowledged, records how far it got; after a restart it
resends from there. The auth drops an event id it already stored, so a resend
after a crash between upload and acknowledgement stores nothing twice. For the
same reason the cursor is overwritten in place and never fsynced: one that a
power cut leaves behind only makes the host send some events again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gatehouse import metrics
from gatehouse._sys.fdio import write_all
from gatehouse.errors import ConnectionProblem, GatehouseError

__all__ = ["AuditSpool"]

log = logging.getLogger(__name__)

BATCH = 500
# The most bytes of events one upload carries, well within the request bodies the auth
# and the proxy accept (a recording chunk, 1 MiB before 4 MiB): a batch past that would
# be refused whole.
BATCH_BYTES = 256 << 10
COMPACT_AT = 1 << 20  # rewrite the file once this many acknowledged bytes precede the rest
COPY_CHUNK = 1 << 20  # bytes a compaction holds at once

Upload = Callable[[list[dict[str, Any]]], Awaitable[object]]


class AuditSpool:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._path = directory / "audit.jsonl"
        self._cursor_path = directory / "audit.sent"
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._sent = self._read_cursor()
        self._cursor_fd = os.open(self._cursor_path, os.O_WRONLY | os.O_CREAT, 0o600)
        self._ready = asyncio.Event()
        self._ready.set()  # anything left from before a restart is sent first
        metrics.AUDIT_PENDING.set(self._count_unsent())

    def _count_unsent(self) -> int:
        with self._path.open("rb") as f:
            f.seek(self._sent)
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 16), b""))

    def append(self, record: dict[str, Any]) -> None:
        """Spool ``record``. A disk that cannot take it (full, failing) loses it from the
        audit log, not from the host's log: it is logged whole at ERROR and counted
        (``gatehouse_audit_events_lost``), and the caller goes on (a refusal is still
        made, a session still ends) instead of failing in its place."""
        line = json.dumps(record, separators=(",", ":"))
        size = os.fstat(self._fd).st_size
        try:
            write_all(self._fd, line.encode() + b"\n")
        except OSError as exc:
            with contextlib.suppress(OSError):  # no torn line for the sender to stop at
                os.ftruncate(self._fd, size)
            metrics.AUDIT_LOST.inc()
            log.error("audit event not spooled (%s), kept here instead: %s",
                      exc.strerror or exc, line)
            return
        metrics.AUDIT_PENDING.inc()
        self._ready.set()

    def _read_cursor(self) -> int:
        try:
            return int(self._cursor_path.read_text())
        except (FileNotFoundError, ValueError):
            return 0

    def _move_cursor(self, offset: int) -> None:
        """Record that everything before ``offset`` was sent (fixed width: one write)."""
        os.pwrite(self._cursor_fd, b"%020d\n" % offset, 0)
        self._sent = offset

    def _pending(self, offset: int) -> tuple[list[dict[str, Any]], int]:
        with self._path.open("rb") as f:
            f.seek(offset)
            records: list[dict[str, Any]] = []
            size = 0
            for line in f:
                if not line.endswith(b"\n") or len(records) >= BATCH or (
                        size and size + len(line) > BATCH_BYTES):
                    break  # a line still being written, or enough for one upload
                offset += len(line)
                size += len(line)
                try:
                    records.append(json.loads(line))
                except ValueError:
                    log.error("skipping a corrupt line in the audit spool")
        return records, offset

    async def run(self, upload: Upload) -> None:
        """Upload forever, in order, retrying while the auth is unreachable."""
        delay = 0.5
        while True:
            await self._ready.wait()
            self._ready.clear()
            while True:
                records, end = self._pending(self._sent)
                if not records:
                    if end > self._sent:
                        self._move_cursor(end)
                    break
                os.fsync(self._fd)
                try:
                    await upload(records)
                except ConnectionProblem as exc:
                    log.warning("audit upload failed (%s); retrying", exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
                    continue
                except GatehouseError as exc:  # refused: keep going, do not block the rest
                    log.error("auth refused %d audit events: %s", len(records), exc)
                else:
                    metrics.AUDIT_FORWARDED.inc(len(records))
                metrics.AUDIT_PENDING.dec(len(records))
                delay = 0.5
                self._move_cursor(end)
                if end >= COMPACT_AT:
                    self._compact(end)

    def _compact(self, sent: int) -> None:
        """Drop the acknowledged head of the file (events appended meanwhile are kept).
        The rest is copied a chunk at a time: after a long outage it may be large."""
        tmp = self._path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out, self._path.open("rb") as f:
            f.seek(sent)
            shutil.copyfileobj(f, out, COPY_CHUNK)
            out.flush()
            os.fsync(out.fileno())
        self._move_cursor(0)  # durably first: a crash from here on resends, never skips
        os.fsync(self._cursor_fd)
        os.replace(tmp, self._path)
        os.close(self._fd)
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def close(self) -> None:
        os.close(self._fd)
        os.close(self._cursor_fd)
