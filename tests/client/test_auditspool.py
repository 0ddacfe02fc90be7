"""A host's audit spool: nothing emitted is lost, order is kept, restarts resume."""

from __future__ import annotations

import asyncio
import json
import os
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from gatehouse.client import auditspool as spool_module
from gatehouse.client.auditspool import BATCH_BYTES, AuditSpool
from gatehouse.errors import BadParameter, ConnectionProblem
from gatehouse.wire.eventsize import MAX_FIELDS
from gatehouse.wire.names import RECORDING_CHUNK


class Auth:
    """Stands in for the auth's POST /v1/events: records batches, fails on demand."""

    def __init__(self, failures: int = 0, max_body: int = 0) -> None:
        self.failures = failures
        self.max_body = max_body  # a larger request is refused whole, as aiohttp does
        self.got: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    async def upload(self, batch: list[dict[str, Any]]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionProblem("auth unreachable")
        if self.max_body and len(json.dumps({"events": batch})) > self.max_body:
            raise BadParameter("request body too large")
        self.got += batch
        self.arrived.set()


async def _deliver(spool: AuditSpool, auth: Auth, count: int) -> None:
    task = asyncio.create_task(spool.run(auth.upload))
    try:
        async with asyncio.timeout(15):
            while len(auth.got) < count:
                auth.arrived.clear()
                await auth.arrived.wait()
            await asyncio.sleep(0.05)  # let the cursor be written
    finally:
        task.cancel()


async def test_events_arrive_in_order_despite_failures(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool_module, "BATCH", 3)
    spool = AuditSpool(tmp_path)
    for i in range(10):
        spool.append({"event": "exec", "n": i})
    auth = Auth(failures=2)
    await _deliver(spool, auth, 10)
    assert [e["n"] for e in auth.got] == list(range(10))
    spool.close()


async def test_a_restart_resumes_after_the_acknowledged_events(tmp_path: Path) -> None:
    first = AuditSpool(tmp_path)
    for i in range(3):
        first.append({"n": i})
    auth = Auth()
    await _deliver(first, auth, 3)
    first.close()
    second = AuditSpool(tmp_path)  # the node restarted: what was sent is not sent again
    second.append({"n": 3})
    later = Auth()
    await _deliver(second, later, 1)
    assert [e["n"] for e in later.got] == [3]
    second.close()


async def test_events_appended_before_a_crash_are_sent_after_it(tmp_path: Path) -> None:
    crashed = AuditSpool(tmp_path)
    crashed.append({"event": "session.end", "n": 0})  # then kill -9: no upload happened
    crashed.close()
    auth = Auth()
    await _deliver(AuditSpool(tmp_path), auth, 1)
    assert auth.got == [{"event": "session.end", "n": 0}]


async def test_compaction_keeps_what_was_not_sent(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool_module, "COMPACT_AT", 100)
    spool = AuditSpool(tmp_path)
    for i in range(20):
        spool.append({"n": i, "pad": "x" * 20})
    auth = Auth()
    await _deliver(spool, auth, 20)
    assert (tmp_path / "audit.jsonl").stat().st_size < 100
    spool.append({"n": 20})
    more = Auth()
    await _deliver(spool, more, 1)
    assert [e["n"] for e in more.got] == [20]
    spool.close()


def test_compaction_copies_the_unsent_tail_without_holding_it(tmp_path: Path) -> None:
    """After a long outage the unsent tail is large: compaction streams it into the new
    file, a chunk at a time, instead of reading it whole into memory."""
    spool = AuditSpool(tmp_path)
    for i in range(20_000):
        spool.append({"n": i, "pad": "x" * 1000})  # about 20 MB
    path = tmp_path / "audit.jsonl"
    before = path.read_bytes()
    first = before.index(b"\n") + 1
    tracemalloc.start()
    try:
        spool._compact(first)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert path.read_bytes() == before[first:]
    assert peak < 4 << 20, peak
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    spool.close()


async def test_large_events_go_in_batches_the_auth_accepts(tmp_path: Path) -> None:
    spool = AuditSpool(tmp_path)
    count = 12 * BATCH_BYTES // MAX_FIELDS  # events as large as the auth stores them
    for i in range(count):
        spool.append({"event": "exec", "n": i, "fields": {"command": "x" * (MAX_FIELDS - 20)}})
    auth = Auth(max_body=RECORDING_CHUNK)
    await _deliver(spool, auth, count)
    assert [e["n"] for e in auth.got] == list(range(count))
    spool.close()


def test_an_event_the_full_disk_cannot_take_is_logged_whole_not_raised(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Before, append raised the disk's OSError into its caller: a leaf proxy refusing a
    # dial on a full disk failed the tunnel stream's handler with a traceback
    # ("handler failed: [Errno 28] No space left on device") instead of refusing.
    spool = AuditSpool(tmp_path / "audit")
    full = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC, as a full disk's
    os.dup2(full, spool._fd)
    os.close(full)
    lost = spool_module.metrics.AUDIT_LOST._value.get()
    spool.append({"event": "proxy.dial.denied", "id": "e1", "message": "no such node"})
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "No space left on device" in record.getMessage()
    assert '"event":"proxy.dial.denied"' in record.getMessage()  # the event, whole
    assert spool_module.metrics.AUDIT_LOST._value.get() == lost + 1
