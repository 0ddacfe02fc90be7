"""The audit of failures by callers without a certificate (logins, joins, refused calls,
dials of the proxy without a certificate): the first of a kind from a source is stored
at once; its repeats within the window become one event with a ``count``.

A stranger chooses how often to fail; each failure would otherwise be one event, kept
and scanned by every search. The summary event is the last failure of the window,
with ``fields.count`` (how many it stands for), ``fields.first`` (when the first of
them happened) and ``fields.names`` (the distinct users or nodes they named, at most
repeats.NAMES). Windows are closed every FLUSH_EVERY by ``run``, and all at its end.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

from gatehouse.clock import Clock, Monotonic, utc
from gatehouse.errors import GatehouseError
from gatehouse.ratelimit import source_of
from gatehouse.repeats import Repeats
from gatehouse.services.events import AuditEvent, AuditLog

__all__ = ["FLUSH_EVERY", "AnonymousFailures"]

log = logging.getLogger(__name__)

FLUSH_EVERY = 1.0  # seconds between looks for windows that ended


class AnonymousFailures:
    def __init__(self, audit: AuditLog, clock: Clock, window: dt.timedelta, sources: int) -> None:
        self._audit = audit
        self._clock = clock
        self._repeats: Repeats[AuditEvent] = Repeats(window.total_seconds(), sources)

    async def emit(self, event: str, **kw: Any) -> None:
        await self.record(self._audit.new(event, **kw))

    async def record(self, ev: AuditEvent) -> None:
        """Store ``ev`` now, or count it in its source's window for this kind of event."""
        # Repeats of one failure (kind, source, reason) fold; a new reason is audited at
        # once. A login's reason names no user, so guessing many names still folds.
        key = (ev.event, source_of(ev.remote_addr), ev.message)
        name = ev.user or ev.node or str(ev.fields.get("leaf", ""))
        # Windows run on this auth's clock (a host's event may carry its own time).
        if self._repeats.add(key, ev, self._clock.now().timestamp(), name=name):
            await self._audit.store(ev)

    async def flush(self, *, everything: bool = False) -> None:
        """Store one event for each window that ended (``everything``: each window)."""
        due = self._repeats.drain() if everything else \
            self._repeats.due(self._clock.now().timestamp())
        for repeated in due:
            ev = repeated.item
            await self._audit.store(dataclasses.replace(ev, fields={
                **ev.fields, "count": repeated.count, "first": utc(repeated.first).isoformat(),
                "names": repeated.names}))

    async def run(self, timer: Monotonic) -> None:
        """Close windows as they end, until cancelled; then close every one."""
        try:
            while True:
                await timer.sleep(FLUSH_EVERY)
                await self.flush()
        finally:
            try:
                await self.flush(everything=True)
            except GatehouseError as exc:
                log.error("could not store the counts of repeated failures: %s", exc)
