"""Unconditional writes that wait a moment to go out together, in one atomic write.

An auth serving 10,000 nodes takes about 200 heartbeats a second, each a write of
three items. Written one by one, on PostgreSQL each is a statement and a commit of
its own, and the two auths' CPU for them doubled (bench pg_cluster: 52 % of a core
against 26 % while the heartbeats came in bunches and went out in shared
statements). Held for WINDOW, a dozen go out in one write.

Each writer names its group (a node): a group's later writes replace its earlier
ones in the batch still open (the same keys; the later values win, as two writes
in a row would leave them). :meth:`settled` waits until a group has nothing
pending, for a writer that must read the group's stored state next. A batch that
cannot be written is written again group by group: each writer hears its own
outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from gatehouse.backend import Backend, Write
from gatehouse.errors import ConnectionProblem

__all__ = ["Coalescer"]


class _Batch:
    def __init__(self) -> None:
        self.writes: dict[str, Sequence[Write]] = {}
        self.size = 0  # bytes of the items' keys and values
        self.full = asyncio.Event()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.failed: dict[str, BaseException] = {}  # group -> its own write's error


class Coalescer:
    """Writes to ``backend`` gathered for up to ``window`` seconds, at most ``most``
    groups (etcd takes 128 operations to a transaction) and about ``most_bytes`` bytes
    (etcd takes 1.5 MiB to a request) to a write."""

    def __init__(self, backend: Backend, *, window: float, most: int,
                 most_bytes: int = 512 << 10) -> None:
        self._backend = backend
        self._window = window
        self._most = most
        self._most_bytes = most_bytes
        self._open: _Batch | None = None
        self._pending: dict[str, _Batch] = {}  # group -> the last batch that holds it

    async def write(self, group: str, writes: Sequence[Write]) -> None:
        """Write ``writes`` (unconditional puts) with others; raises what its write
        raised."""
        batch, lead = self._open, False
        if batch is None:
            batch, lead = _Batch(), True
            self._open = batch
        replaced = batch.writes.get(group, ())
        batch.writes[group] = writes
        batch.size += _size(writes) - _size(replaced)
        self._pending[group] = batch
        if len(batch.writes) >= self._most or batch.size >= self._most_bytes:
            self._open = None
            batch.full.set()
        # Shielded: a writer stopped (its caller went away) must not stop the batch
        # that carries the others' writes.
        await asyncio.shield(self._send(batch) if lead else batch.done)
        batch.done.result()
        if group in batch.failed:
            raise batch.failed[group]

    async def settled(self, group: str) -> None:
        """Once no batch holding ``group`` is waiting or on its way (its outcome is the
        writer's to hear)."""
        batch = self._pending.get(group)
        if batch is not None:
            await asyncio.shield(batch.done)  # set once written, whatever the outcome

    async def _send(self, batch: _Batch) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._window):
                await batch.full.wait()
        if self._open is batch:
            self._open = None
        try:
            try:
                await self._backend.atomic_write(
                    [w for ws in batch.writes.values() for w in ws])
            except ConnectionProblem as exc:  # none can be written now
                batch.failed = dict.fromkeys(batch.writes, exc)
            except Exception:
                # Each group alone, so that one that cannot be written (too large, say)
                # fails only its own writer, not the heartbeats it shared a batch with.
                for group, writes in batch.writes.items():
                    try:
                        await self._backend.atomic_write(writes)
                    except Exception as exc:
                        batch.failed[group] = exc
            batch.done.set_result(None)
        finally:
            if not batch.done.done():  # interrupted: the loop is stopping
                batch.done.cancel()
            for group in batch.writes:
                if self._pending.get(group) is batch:
                    del self._pending[group]


def _size(writes: Sequence[Write]) -> int:
    return sum(len(w.key) + (len(w.item.value) if w.item is not None else 0) for w in writes)
