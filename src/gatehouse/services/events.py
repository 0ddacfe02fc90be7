"""The audit log: events with stable codes, stored in time order in the backend."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from gatehouse.backend import Backend, Item, Write, prefix_end
from gatehouse.clock import Clock
from gatehouse.config import DEFAULT_AUDIT_RETENTION
from gatehouse.errors import BadParameter, CompareFailed, NotFound

__all__ = ["CODES", "AuditEvent", "AuditLog"]

# event name -> code. "I" = info, "W" = warning (a refusal or failure).
CODES: dict[str, str] = {
    "user.login": "T1000I",
    "user.login.failure": "T1000W",
    "user.create": "T1002I",
    "user.update": "T1003I",
    "user.delete": "T1004I",
    "user.password_change": "T1005I",
    "cert.create": "TC000I",
    "session.start": "T2000I",
    "session.end": "T2004I",
    "session.abort": "T2005W",
    "session.rejected": "T1006W",
    "exec": "T3002I",
    "auth": "T3007W",
    "port_forward": "T3003I",
    "port_forward.denied": "T3003W",
    "join": "TJ001I",
    "join.failure": "TJ001W",
    "token.create": "TJ002I",
    "resource.create": "TR001I",
    "resource.update": "TR002I",
    "resource.delete": "TR003I",
    "proxy.dial.denied": "TP001W",
    "access.denied": "TA001W",
    "trusted_cluster.join": "TT001I",
    "trusted_cluster.join.failure": "TT001W",
    "trusted_cluster.create": "TT002I",
    "trusted_cluster.update": "TT003I",
    "trusted_cluster.delete": "TT004I",
    "remote_cluster.delete": "TT005I",
}

_PREFIX = b"/events/"


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

    def to_json_obj(self) -> dict[str, Any]:
        obj = asdict(self)
        obj["time"] = self.time.isoformat()
        return obj

    @classmethod
    def from_json_obj(cls, raw: dict[str, Any]) -> AuditEvent:
        try:
            known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
            known["time"] = dt.datetime.fromisoformat(raw["time"])
            if not isinstance(known.get("fields", {}), dict):
                raise TypeError("fields must be an object")
            return cls(**known)
        except (KeyError, TypeError, ValueError) as exc:
            raise BadParameter(f"malformed audit event: {exc}") from exc


class AuditLog:
    """The log; every event stored expires ``retention`` after it was stored here."""

    def __init__(self, backend: Backend, clock: Clock, cluster: str,
                 retention: dt.timedelta = DEFAULT_AUDIT_RETENTION) -> None:
        self._backend = backend
        self._clock = clock
        self.cluster = cluster
        self._retention = retention
        self._last_ts = 0

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
        """Store a local event; returns its key. Keys follow the order of storing (the
        auth's clock, strictly increasing), so that an export cursor never skips an
        event that a node reported late."""
        key = self._next_key(ev)
        await self._backend.put(self._item(_PREFIX + key.encode(), ev))
        return key

    def _next_key(self, ev: AuditEvent) -> str:
        ts = max(int(self._clock.now().timestamp() * 1_000_000), self._last_ts + 1)
        self._last_ts = ts
        return f"{ts:020d}/{ev.id}"

    async def store_remote(self, source_key: str, ev: AuditEvent) -> None:
        """Store a leaf's event under a key made from the leaf's own key: delivering the
        same event twice stores it once."""
        ts, _, event_id = source_key.partition("/")
        if not (len(ts) == 20 and ts.isdigit()) or event_id != ev.id:
            raise BadParameter(f"malformed event key {source_key!r}")
        key = _PREFIX + f"{ts}/~{ev.cluster}/{ev.id}".encode()
        await self._backend.put(self._item(key, ev))

    async def store_once(self, host_id: str, host_event_id: str, ev: AuditEvent,
                         expires: dt.datetime) -> bool:
        """Store an event a host reported unless that host reported ``host_event_id``
        before (a host resends what it is not sure arrived; the id is remembered until
        ``expires``): True when stored. The check and the write are one transaction."""
        seen = f"/event_seen/{host_id}/{host_event_id}".encode()
        key = _PREFIX + self._next_key(ev).encode()
        try:
            await self._backend.atomic_write([
                Write(seen, Item(key=seen, value=b"", expires=expires), expect_revision=0),
                Write(key, self._item(key, ev)),
            ])
        except CompareFailed:
            return False
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

    async def cursor(self, root: str) -> str:
        """How far this cluster's events were acknowledged by ``root``."""
        try:
            return (await self._backend.get(f"/event_cursors/{root}".encode())).value.decode()
        except NotFound:
            return ""

    async def set_cursor(self, root: str, after: str) -> None:
        await self._backend.put(Item(key=f"/event_cursors/{root}".encode(), value=after.encode()))

    async def search(
        self,
        *,
        since: dt.datetime | None = None,
        types: Iterable[str] = (),
        user: str = "",
        cluster: str = "",
        limit: int = 10_000,
    ) -> list[AuditEvent]:
        start = _PREFIX
        if since is not None:
            start = _PREFIX + f"{int(since.timestamp() * 1_000_000):020d}".encode()
        wanted = set(types)
        out: list[AuditEvent] = []
        for item in await self._backend.get_range(start, prefix_end(_PREFIX)):
            ev = AuditEvent.from_json_obj(json.loads(item.value))
            if wanted and ev.event not in wanted:
                continue
            if (user and ev.user != user) or (cluster and ev.cluster != cluster):
                continue
            out.append(ev)
            if len(out) >= limit:
                break
        return out
