"""The audit log: events with stable codes, stored in the order this auth received them.

An event's key is ``/events/<received>/<id>``, or ``/events/<received>/~<cluster>/<id>``
for a leaf's (``received``: this auth's clock in microseconds, 20 digits, strictly
increasing). So this auth alone decides where an event sorts: a host's or a leaf's own
time is a field of the event (a leaf's is ``leaf_time``), never a position. Events a leaf
forwarded before this rule sit under the leaf's time (``<leaf time>/~<cluster>/<id>``) and
are listed where they are. A search reads newest first, a page at a time, each page
bounded in what it reads; a cursor (the last key read) continues it.

Local events are written in groups: an event stored while a write of events is
in flight goes with the next one, which carries every event that came meanwhile
in one transaction (one commit for many concurrent logins, not one each). Each
``store`` returns only once the transaction holding its event has committed, so
what it acknowledges (a certificate handed out after its ``cert.create``) is
as durable as with a write of its own: a crash before the commit loses the
event and the acknowledgement with it, never the event alone. Keys are taken
when the group is written, so they still follow the order of writing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import uuid
from collections.abc import AsyncIterator, Container, Iterable
from dataclasses import dataclass, field
from typing import Any

from gatehouse import metrics
from gatehouse.backend import Backend, Item, Write, prefix_end
from gatehouse.clock import Clock
from gatehouse.config import DEFAULT_AUDIT_RETENTION
from gatehouse.errors import BadParameter, CompareFailed, NotFound
from gatehouse.wire.names import EVENT_PAGE, MAX_EVENT_PAGE

__all__ = ["CODES", "KEYS", "MAX_SCAN", "SESSION_EVENTS", "AuditEvent", "AuditLog", "EventsPage"]

# event name -> code. "I" = info, "W" = warning (a refusal or failure).
CODES: dict[str, str] = {
    "user.login": "T1000I",
    "user.login.failure": "T1000W",
    "user.create": "T1002I",
    "user.update": "T1003I",
    "user.delete": "T1004I",
    "user.password_change": "T1005I",
    "leaf.login": "TL001I",  # a leaf certified a root user for its own logins
    "leaf.login.failure": "TL001W",
    "cert.create": "TC000I",
    "cert.renew": "TC001I",
    "session.start": "T2000I",
    "session.end": "T2004I",
    "session.abort": "T2005W",
    "session.recording.failure": "T2006W",
    "session.upload.failure": "T2007W",
    "session.rejected": "T1006W",
    "exec": "T3002I",
    "auth": "T3007W",
    "port_forward": "T3003I",
    "port_forward.denied": "T3003W",
    "sftp": "TS001I",
    "sftp.denied": "TS001W",
    "join": "TJ001I",
    "join.failure": "TJ001W",
    "token.create": "TJ002I",
    "resource.create": "TR001I",
    "resource.update": "TR002I",
    "resource.delete": "TR003I",
    "proxy.dial.denied": "TP001W",
    "access.denied": "TA001W",
    "client_cert.denied": "TA002W",
    "trusted_cluster.join": "TT001I",
    "trusted_cluster.join.failure": "TT001W",
    "trusted_cluster.create": "TT002I",
    "trusted_cluster.update": "TT003I",
    "trusted_cluster.delete": "TT004I",
    "remote_cluster.delete": "TT005I",
    "remote_cluster.expire": "TT006I",  # offline past auth_service.remote_cluster_offline_ttl
}

_PREFIX = b"/events/"
_SEEN = "/event_seen/"  # + source + "/" + the source's event id: reported before
_CURSORS = "/event_cursors/"  # + root: how far the root acknowledged this cluster's events
KEYS = (_PREFIX, _SEEN.encode(), _CURSORS.encode())
"""The prefixes of the items an AuditLog keeps."""
MAX_SCAN = 100_000  # events one search reads at most; past that it answers with a cursor
_SCAN_BATCH = 1000
_GROUP = 256  # local events written in one transaction at most
_CURSOR = re.compile(r"\d{20}/[!-~]{1,400}")  # a key below _PREFIX, as search hands it out
SESSION_EVENTS = frozenset({"session.start", "session.end"})


@dataclass(frozen=True)
class AuditEvent:
    event: str
    time: dt.datetime
    cluster: str
    code: str = ""
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    user: str = ""
    login: str = ""
    node: str = ""
    remote_addr: str = ""
    session_id: str = ""
    correlation_id: str = ""
    message: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    # A leaf's event at its root: the leaf's own time (``time`` is when the root got it).
    leaf_time: dt.datetime | None = None

    def to_json_obj(self) -> dict[str, Any]:
        """The event as JSON types, to encode at once: ``fields`` is copied one level
        deep, not with ``asdict``'s deep copy (a third of the cost of storing an
        event, measured on the issuance row)."""
        obj = {name: getattr(self, name) for name in self.__dataclass_fields__}
        obj["fields"] = dict(self.fields)
        obj["time"] = self.time.isoformat()
        obj["leaf_time"] = self.leaf_time.isoformat() if self.leaf_time else None
        return obj

    @classmethod
    def from_json_obj(cls, raw: dict[str, Any]) -> AuditEvent:
        try:
            known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
            known["time"] = dt.datetime.fromisoformat(raw["time"])
            if known.get("leaf_time") is not None:
                known["leaf_time"] = dt.datetime.fromisoformat(known["leaf_time"])
            if not isinstance(known.get("fields", {}), dict):
                raise TypeError("fields must be an object")
            return cls(**known)
        except (KeyError, TypeError, ValueError) as exc:
            raise BadParameter(f"malformed audit event: {exc}") from exc


@dataclass(frozen=True)
class EventsPage:
    events: list[AuditEvent]
    next: str  # where the next page starts (search's cursor); "" when this was the last


class AuditLog:
    """The log; every event stored expires ``retention`` after it was stored here."""

    def __init__(self, backend: Backend, clock: Clock, cluster: str,
                 retention: dt.timedelta = DEFAULT_AUDIT_RETENTION) -> None:
        self._backend = backend
        self._clock = clock
        self.cluster = cluster
        self._retention = retention
        self._last_ts = 0
        self._waiting: list[tuple[AuditEvent, asyncio.Future[str]]] = []
        self._writing = False

    def _item(self, key: bytes, ev: AuditEvent) -> Item:
        return Item(key=key, value=json.dumps(ev.to_json_obj()).encode(),
                    expires=self._clock.now() + self._retention)

    def new(self, event: str, **kw: Any) -> AuditEvent:
        if event not in CODES:
            raise BadParameter(f"unknown audit event type {event!r}")
        return AuditEvent(
            event=event, code=CODES[event], time=self._clock.now(), cluster=self.cluster, **kw
        )

    async def emit(self, event: str, **kw: Any) -> AuditEvent:
        ev = self.new(event, **kw)
        await self.store(ev)
        return ev

    async def store(self, ev: AuditEvent) -> str:
        """Store a local event, with the others waiting (see the module's docstring);
        returns its key once committed. Keys follow the order of storing (the auth's
        clock, strictly increasing), so that an export cursor never skips an event
        that a node reported late."""
        stored: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting.append((ev, stored))
        if not self._writing:
            self._writing = True
            # Shielded: the groups are written to the end for every event waiting,
            # even if the caller that started them is cancelled.
            await asyncio.shield(self._write_groups())
        return await stored

    async def _write_groups(self) -> None:
        """Write the waiting events, a group per transaction, until none is left."""
        try:
            while self._waiting:
                most = min(_GROUP, self._backend.max_atomic_writes)
                group, self._waiting = self._waiting[:most], self._waiting[most:]
                # The keys, then the write's place in the backend's order, with no
                # await between them: keys follow the order of writing.
                keys = [self._next_key(ev) for ev, _ in group]
                items = [self._item(_PREFIX + key.encode(), ev)
                         for key, (ev, _) in zip(keys, group, strict=True)]
                try:
                    await self._backend.atomic_write([Write(i.key, i) for i in items])
                except Exception as exc:
                    for _, stored in group:
                        if not stored.cancelled():
                            stored.set_exception(exc)
                    continue
                for key, (ev, stored) in zip(keys, group, strict=True):
                    self._count(ev)
                    if not stored.cancelled():
                        stored.set_result(key)
        finally:
            self._writing = False

    def _count(self, ev: AuditEvent) -> None:
        if ev.cluster == self.cluster:  # a leaf's logins and sessions are the leaf's to count
            metrics.count_event(ev.event)

    def _next_key(self, ev: AuditEvent) -> str:
        ts = max(int(self._clock.now().timestamp() * 1_000_000), self._last_ts + 1)
        self._last_ts = ts
        if ev.cluster != self.cluster:
            return f"{ts:020d}/~{ev.cluster}/{ev.id}"
        return f"{ts:020d}/{ev.id}"

    async def store_once(self, source: str, source_event_id: str, ev: AuditEvent,
                         expires: dt.datetime) -> bool:
        """Store an event a host (or a leaf, ``~NAME``) reported unless it reported
        ``source_event_id`` before (what a sender is not sure arrived, it sends again;
        the id is remembered until ``expires``): True when stored. The check and the
        write are one transaction."""
        seen = f"{_SEEN}{source}/{source_event_id}".encode()
        key = _PREFIX + self._next_key(ev).encode()
        try:
            await self._backend.atomic_write([
                Write(seen, Item(key=seen, value=b"", expires=expires), expect_revision=0),
                Write(key, self._item(key, ev)),
            ])
        except CompareFailed:
            return False
        self._count(ev)
        return True

    async def export(self, after: str, limit: int = 500
                     ) -> tuple[list[tuple[str, AuditEvent]], str]:
        """This cluster's own events stored after key ``after``, in order (for forwarding),
        and the key to resume after (past any other cluster's events it skipped)."""
        start = _PREFIX + after.encode() + b"\x00" if after else _PREFIX
        out = []
        last = after
        for item in await self._backend.get_range(start, prefix_end(_PREFIX), limit):
            last = item.key[len(_PREFIX):].decode()
            ev = AuditEvent.from_json_obj(json.loads(item.value))
            if ev.cluster == self.cluster:
                out.append((last, ev))
        return out, last

    async def newest(self) -> None:
        """Read the newest event's key: a read that needs the log's backend to answer
        (the auth's readiness, where the log has a backend of its own)."""
        await self._backend.get_range(_PREFIX, prefix_end(_PREFIX), 1, reverse=True)

    async def cursor(self, root: str) -> str:
        """How far this cluster's events were acknowledged by ``root``."""
        try:
            return (await self._backend.get(f"{_CURSORS}{root}".encode())).value.decode()
        except NotFound:
            return ""

    async def set_cursor(self, root: str, after: str) -> None:
        await self._backend.put(Item(key=f"{_CURSORS}{root}".encode(), value=after.encode()))

    async def search(
        self,
        *,
        since: dt.datetime | None = None,
        types: Iterable[str] = (),
        user: str = "",
        cluster: str = "",
        hidden: Container[str] = (),
        limit: int = EVENT_PAGE,
        cursor: str = "",
    ) -> EventsPage:
        """The events that match, newest first (received last, listed first), at most
        ``limit``; ``cursor`` continues an earlier page. Events of the clusters in
        ``hidden`` never match. A page that read MAX_SCAN events
        ends there, with a cursor, however few it found."""
        if not 1 <= limit <= MAX_EVENT_PAGE:
            raise BadParameter(f"event limit {limit}: expected 1 to {MAX_EVENT_PAGE}")
        start = _PREFIX
        if since is not None:
            start = _PREFIX + f"{int(since.timestamp() * 1_000_000):020d}".encode()
        end = prefix_end(_PREFIX)
        if cursor:
            if not _CURSOR.fullmatch(cursor):
                raise BadParameter(f"event cursor {cursor!r}: expected one that an earlier "
                                   "page of events ended with")
            end = _PREFIX + cursor.encode()
        wanted = set(types)
        unknown = sorted(wanted - CODES.keys())
        if unknown:  # a typo would otherwise find nothing, as if nothing had happened
            raise BadParameter(f"unknown event type{'s' if len(unknown) > 1 else ''} "
                               f"{', '.join(map(repr, unknown))}: the types are "
                               f"{', '.join(sorted(CODES))}")
        out: list[AuditEvent] = []
        scanned = 0
        while scanned < MAX_SCAN:
            batch = min(_SCAN_BATCH, MAX_SCAN - scanned)
            items = await self._backend.get_range(start, end, batch, reverse=True)
            for item in items:
                scanned += 1
                end = item.key  # the next read ends below it
                ev = AuditEvent.from_json_obj(json.loads(item.value))
                if wanted and ev.event not in wanted:
                    continue
                if (user and ev.user != user) or (cluster and ev.cluster != cluster) \
                        or ev.cluster in hidden:
                    continue
                out.append(ev)
                if len(out) == limit:
                    return EventsPage(out, _cursor(end))
            if len(items) < batch:
                return EventsPage(out, "")
        return EventsPage(out, _cursor(end))

    async def other_clusters_sessions(self) -> AsyncIterator[tuple[str, str]]:
        """(session id, cluster) of every session event another cluster forwarded, in
        storing order, read a batch at a time (to index the sessions filed before
        their index existed)."""
        start, end = _PREFIX, prefix_end(_PREFIX)
        while items := await self._backend.get_range(start, end, _SCAN_BATCH):
            for item in items:
                if b"/~" not in item.key[len(_PREFIX):]:
                    continue  # this cluster's own
                try:
                    ev = AuditEvent.from_json_obj(json.loads(item.value))
                except (BadParameter, ValueError):
                    continue  # unreadable: it names no session
                if ev.event in SESSION_EVENTS and ev.cluster != self.cluster:
                    yield ev.session_id, ev.cluster
            start = items[-1].key + b"\0"


def _cursor(key: bytes) -> str:
    return key[len(_PREFIX):].decode()
