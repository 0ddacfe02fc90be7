"""Trusted clusters in storage, both ends (ARCHITECTURE §3); auth.server decides joins.

Leaf side: the ``trusted_cluster`` resources and, for each, the root's public CAs;
removing a root removes its CAs, so nothing the root signed is trusted any more.

Each leaf proxy reports, every few seconds while it dials any root, the state of each
of its tunnels (up, or down and why): kept as one item per proxy, from which a
``trusted_cluster``'s status is judged when shown.

Root side: each joined leaf's public host CA (trusted only to authenticate that
leaf proxy's tunnel) and a ``remote_cluster`` record whose status follows the
tunnel. Each root proxy reports every few seconds, in one call, the leaves whose
tunnels it holds; that is kept as one item per proxy (with when it last held each
leaf it no longer holds), so that a leaf costs no write of its own: its connection
and last heartbeat are read from those items.

``watch`` tells of every change to what a trust snapshot is made of (roles, users,
every CA, trusted clusters), so that nodes and proxies are told at once; and of every
host removed, after which proxies ask again about the node tunnels they hold.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from gatehouse.backend import Backend, EventType, Item, Watcher, Write, prefix_end
from gatehouse.clock import Clock, utc
from gatehouse.errors import BadParameter, NotFound
from gatehouse.services.authorities import PREFIX as AUTHORITIES
from gatehouse.services.hosts import PREFIX as HOSTS
from gatehouse.services.leafnames import LeafNames
from gatehouse.services.resources import ResourceStore, kind_prefix
from gatehouse.types.cluster_access import ClusterAccess
from gatehouse.types.remote_cluster import RemoteCluster, RemoteClusterStatus
from gatehouse.types.resource import Metadata
from gatehouse.types.trusted_cluster import TrustedCluster, TrustedClusterStatus
from gatehouse.wire.authapi import LeafInfo, RootTunnel
from gatehouse.wire.trust import PublicCA

__all__ = ["ONLINE_WITHIN", "REPORT_KEPT", "RootTunnelsReport", "TrustChanges", "TrustStore",
           "trust_status"]

log = logging.getLogger(__name__)

# A leaf is online while a root proxy's report listing its tunnel is this fresh (a proxy
# reports every tunnel.liveness.REPORT_INTERVAL; this spans a few missed reports).
ONLINE_WITHIN = dt.timedelta(seconds=15)
# A proxy's last report outlives the proxy by this much, and remembers a leaf it no
# longer holds this long, for the last_heartbeat shown.
REPORT_KEPT = dt.timedelta(days=30)


@dataclass(frozen=True)
class _TunnelReport:
    """What one root proxy last said: the leaves whose tunnels it held then, and when it
    last held each leaf it held before (times as Unix timestamps: cheap to read); and
    what each of those leaves last said of itself (``info``, LeafInfo's fields)."""

    time: float
    leaves: frozenset[str]
    gone: dict[str, float]
    info: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps({"time": self.time, "leaves": list(self.leaves),
                           "gone": self.gone, "info": self.info}).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> _TunnelReport:
        data = json.loads(raw)
        return cls(float(data["time"]), frozenset(map(str, data["leaves"])),
                   {str(k): float(v) for k, v in data["gone"].items()},
                   {str(k): {str(f): str(v) for f, v in fields.items()}
                    for k, fields in data.get("info", {}).items()})

    def then(self, now: float, held: frozenset[str],
             info: Mapping[str, LeafInfo]) -> _TunnelReport:
        """The report that follows this one, holding ``held`` at ``now`` (``info``: what
        leaves said of themselves; a leaf that said nothing new keeps what it said)."""
        oldest = now - REPORT_KEPT.total_seconds()
        gone = {leaf: t for leaf, t in self.gone.items() if leaf not in held and t >= oldest}
        gone.update((leaf, self.time) for leaf in self.leaves - held)
        said = {leaf: fields for leaf, fields in self.info.items() if leaf in held or leaf in gone}
        said.update((leaf, i.model_dump()) for leaf, i in info.items() if leaf in held)
        return _TunnelReport(now, held, gone, said)


@dataclass(frozen=True)
class RootTunnelsReport:
    """What one leaf proxy last said of its tunnels to roots, and when (Unix time)."""

    time: float
    roots: dict[str, RootTunnel]

    def to_json(self) -> bytes:
        return json.dumps({"time": self.time,
                           "roots": [r.model_dump() for r in self.roots.values()]}).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> RootTunnelsReport:
        data = json.loads(raw)
        tunnels = [RootTunnel.model_validate(r) for r in data["roots"]]
        return cls(float(data["time"]), {t.root: t for t in tunnels})


def _fresh(reports: Iterable[RootTunnelsReport], now: float,
           joined_at: float) -> list[RootTunnelsReport]:
    """The reports of the last ONLINE_WITHIN, and since the join (one before it speaks of
    a tunnel the join replaced)."""
    return [r for r in reports
            if now - r.time <= ONLINE_WITHIN.total_seconds() and r.time >= joined_at]


def trust_status(tc: TrustedCluster, reports: Iterable[RootTunnelsReport], now: float,
                 joined_at: float = 0.0) -> TrustedClusterStatus:
    """The tunnel to ``tc``'s root judged at ``now``: online while a fresh report of a
    proxy says it is up; else offline with the reason a proxy gave (or the absence of
    fresh reports: no proxy running)."""
    if not tc.spec.enabled:
        return TrustedClusterStatus(connection="disabled")
    fresh = _fresh(reports, now, joined_at)
    tunnels = [r.roots[tc.metadata.name] for r in fresh if tc.metadata.name in r.roots]
    if any(t.up for t in tunnels):
        return TrustedClusterStatus(connection="online")
    reasons = [t.detail for t in tunnels if t.detail]
    if reasons:
        detail = reasons[0]
    elif fresh or now - joined_at <= ONLINE_WITHIN.total_seconds():
        detail = "connecting"
    else:
        detail = (f"no proxy of this cluster has reported its tunnels in the last "
                  f"{ONLINE_WITHIN.seconds} s: is the proxy running?")
    return TrustedClusterStatus(connection="offline", detail=detail)


class TrustChanges:
    """Notice of changes to what trust snapshots are made of, one per change, without
    saying which (read the snapshot again). Leaving the context stops the watch.

    Iterating raises LimitExceeded if more changes went unread than the backend's watch
    queue holds: nothing was missed silently; read again and watch anew.
    """

    def __init__(self, watcher: Watcher) -> None:
        self._watcher = watcher

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._watcher.close()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> None:
        while True:
            event = await anext(self._watcher)
            # A host joining changes no snapshot; one removed may hold a node tunnel.
            if event.type == EventType.DELETE or not event.item.key.startswith(HOSTS):
                return


class TrustStore:
    def __init__(self, backend: Backend, clock: Clock) -> None:
        self._backend = backend
        self._clock = clock
        self.trusted = ResourceStore(backend, "trusted_cluster", TrustedCluster)
        self.remotes = ResourceStore(backend, "remote_cluster", RemoteCluster)
        self.leaf_names = LeafNames(backend)  # what a joining leaf's name must stay apart from

    def watch(self) -> TrustChanges:
        """Changes from now on to roles, users, SSO connectors, any CA (this cluster's,
        roots', leaves'), trusted clusters (and what their roots say of cluster labels) and
        remote clusters (their labels): everything a trust snapshot is made of; and hosts
        removed."""
        return TrustChanges(self._backend.watch([
            kind_prefix("role"), kind_prefix("user"), kind_prefix("trusted_cluster"),
            kind_prefix("remote_cluster"), kind_prefix("oidc"), AUTHORITIES.encode(), HOSTS]))

    # --- leaf side ------------------------------------------------------------------------

    @staticmethod
    def _root_key(root: str, ca_type: str) -> bytes:
        return f"{AUTHORITIES}trusted/{root}/{ca_type}".encode()

    async def joined_at(self, root: str) -> float:
        """When this cluster last joined ``root`` (Unix time; 0 if it never said)."""
        try:
            item = await self._backend.get(self._root_key(root, "joined"))
        except NotFound:
            return 0.0
        return float(item.value)

    async def root_cas(self, root: str) -> dict[str, PublicCA]:
        cas = {}
        for ca_type in ("user", "host"):
            with contextlib.suppress(NotFound):
                item = await self._backend.get(self._root_key(root, ca_type))
                cas[ca_type] = PublicCA.from_json(json.loads(item.value))
        return cas

    async def store_root(self, tc: TrustedCluster, cas: list[PublicCA]) -> None:
        """Record a completed join: the root's CAs and when, then the resource itself."""
        for ca in cas:
            if ca.cluster != tc.metadata.name:
                raise BadParameter(
                    f"the root at {tc.spec.proxy_addr} is cluster {ca.cluster!r}, not "
                    f"{tc.metadata.name!r}: name the trusted_cluster after the root"
                )
            await self._backend.put(Item(key=self._root_key(ca.cluster, ca.type),
                                         value=json.dumps(ca.to_json()).encode()))
        joined = self._root_key(tc.metadata.name, "joined")
        await self._backend.put(Item(key=joined, value=str(self._clock.now().timestamp())
                                     .encode()))
        await self.trusted.upsert(tc)

    async def root_access(self, root: str) -> ClusterAccess | None:
        """What ``root`` last said of its cluster labels for this cluster (None: nothing)."""
        try:
            item = await self._backend.get(self._root_key(root, "access"))
        except NotFound:
            return None
        try:
            return ClusterAccess.model_validate_json(item.value)
        except ValueError as exc:
            log.warning("ignoring the unreadable cluster access of root %s: %s", root, exc)
            return None

    async def store_root_access(self, root: str, access: ClusterAccess) -> bool:
        """Keep what ``root`` says of its cluster labels for this cluster (a trusted root
        only: NotFound otherwise); False when it says nothing new (nothing written)."""
        await self.trusted.get(root)
        if await self.root_access(root) == access:
            return False
        await self._backend.put(Item(key=self._root_key(root, "access"),
                                     value=access.model_dump_json().encode()))
        return True

    async def remove_root(self, root: str) -> None:
        await self.trusted.delete(root)
        await self._backend.delete_range(*_range(f"{AUTHORITIES}trusted/{root}/"))

    @staticmethod
    def _root_tunnels_key(proxy: str) -> bytes:
        if not proxy or "/" in proxy:
            raise BadParameter(f"invalid proxy name {proxy!r} in a tunnel report")
        return f"/root_tunnels/{proxy}".encode()

    async def root_tunnels_reported(self, proxy: str, roots: Iterable[RootTunnel]) -> None:
        """Record what leaf proxy ``proxy`` says of its tunnels to roots (one write)."""
        now = self._clock.now().timestamp()
        report = RootTunnelsReport(now, {r.root: r for r in roots})
        await self._backend.put(Item(key=self._root_tunnels_key(proxy), value=report.to_json(),
                                     expires=utc(now) + REPORT_KEPT))

    async def _root_tunnel_reports(self) -> list[RootTunnelsReport]:
        reports = []
        for item in await self._backend.get_range(*_range("/root_tunnels/")):
            try:
                reports.append(RootTunnelsReport.from_json(item.value))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable tunnel report %s: %s", item.key.decode(), exc)
        return reports

    async def trusted_clusters(self) -> list[TrustedCluster]:
        """The trusted clusters with the status of their tunnels judged now."""
        reports = await self._root_tunnel_reports()
        now = self._clock.now().timestamp()
        return [tc.model_copy(update={"status": trust_status(
                    tc, reports, now, await self.joined_at(tc.metadata.name))})
                for tc in await self.trusted.list()]

    async def refused_by(self, root: str) -> bool:
        """Whether this cluster's proxies find that ``root`` refuses their tunnel (no fresh
        report has it up, one has it refused): only a new join helps then."""
        fresh = _fresh(await self._root_tunnel_reports(), self._clock.now().timestamp(),
                       await self.joined_at(root))
        tunnels = [r.roots[root] for r in fresh if root in r.roots]
        return any(t.refused for t in tunnels) and not any(t.up for t in tunnels)

    async def trusted_user_cas(self) -> list[tuple[TrustedCluster, PublicCA]]:
        """The user CAs of every ENABLED trusted cluster, with its resource."""
        out = []
        for tc in await self.trusted.list():
            if not tc.spec.enabled:
                continue
            cas = await self.root_cas(tc.metadata.name)
            if "user" in cas:
                out.append((tc, cas["user"]))
        return out

    # --- root side ------------------------------------------------------------------------

    @staticmethod
    def _leaf_key(leaf: str) -> bytes:
        if not leaf or "/" in leaf:
            raise BadParameter(f"invalid cluster name {leaf[:80]!r}")
        return f"{AUTHORITIES}leaves/{leaf}/host".encode()

    async def leaf_ca(self, leaf: str) -> PublicCA | None:
        """The host CA leaf ``leaf`` joined with; None if it has not joined."""
        try:
            item = await self._backend.get(self._leaf_key(leaf))
        except NotFound:
            return None
        return PublicCA.from_json(json.loads(item.value))

    @staticmethod
    def _joined_key(leaf: str) -> bytes:
        return f"/leaf_joined/{leaf}".encode()

    async def leaves_joined(self) -> dict[str, dt.datetime]:
        """When each leaf last joined (leaves that joined before this was kept: absent)."""
        out = {}
        for item in await self._backend.get_range(*_range("/leaf_joined/")):
            with contextlib.suppress(ValueError):
                out[item.key.decode().removeprefix("/leaf_joined/")] = utc(float(item.value))
        return out

    async def store_leaf(self, leaf_ca: PublicCA) -> None:
        """Record a leaf's join in one transaction: its host CA, when, and its
        remote_cluster unless it has one."""
        name = leaf_ca.cluster
        joined = Item(key=self._joined_key(name),
                      value=str(self._clock.now().timestamp()).encode())
        writes = [Write(self._leaf_key(name), Item(key=self._leaf_key(name),
                                                  value=json.dumps(leaf_ca.to_json()).encode())),
                  Write(joined.key, joined), self.leaf_names.write(name)]
        try:
            await self.remotes.get(name)
        except NotFound:
            writes.append(self.remotes.create_write(RemoteCluster(metadata=Metadata(name=name))))
        await self._backend.atomic_write(writes)

    async def set_leaf_labels(self, leaf: str, labels: dict[str, str]) -> dict[str, str]:
        """Give remote cluster ``leaf`` exactly ``labels`` (NotFound if it has not joined);
        the labels it had."""
        rc = await self.remotes.get(leaf)
        await self.remotes.upsert(rc.model_copy(update={
            "metadata": rc.metadata.model_copy(update={"labels": dict(labels)})}))
        return dict(rc.metadata.labels)

    async def index_leaf_names(self) -> int:
        """Enter the names of leaves joined before they were indexed, once (leafnames)."""
        async def joined() -> list[str]:
            return [ca.cluster for ca in await self.leaf_cas()]

        return await self.leaf_names.index_existing(joined)

    async def leaf_cas(self) -> list[PublicCA]:
        items = await self._backend.get_range(*_range(f"{AUTHORITIES}leaves/"))
        return [PublicCA.from_json(json.loads(i.value)) for i in items]

    async def remove_leaf(self, leaf: str) -> None:
        """Forget a leaf in one transaction: its remote_cluster and its host CA, whichever
        is there (NotFound only when neither is)."""
        try:
            await self.remotes.get(leaf)
        except NotFound:
            if await self.leaf_ca(leaf) is None:
                raise NotFound(f"remote_cluster {leaf} not found") from None
        await self._backend.atomic_write([self.remotes.delete_write(leaf),
                                          Write(self._leaf_key(leaf)),
                                          Write(self._joined_key(leaf)),
                                          *await self.leaf_names.removal(leaf)])

    @staticmethod
    def _report_key(proxy: str) -> bytes:
        if not proxy or "/" in proxy:
            raise BadParameter(f"invalid proxy name {proxy!r} in a tunnel report")
        return f"/tunnels/{proxy}".encode()

    async def tunnels_held(self, proxy: str, leaves: Iterable[str],
                           info: Mapping[str, LeafInfo] | None = None) -> None:
        """Record that ``proxy`` now holds the tunnels of ``leaves`` (and of no other
        leaf), and what they said of themselves (``info``): one write, however many
        leaves."""
        key = self._report_key(proxy)
        now = self._clock.now().timestamp()
        held = frozenset(leaves)
        first = _TunnelReport(now, frozenset(), {})
        try:
            last = _TunnelReport.from_json((await self._backend.get(key)).value)
        except NotFound:
            last = first
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("replacing the unreadable tunnel report of proxy %s: %s", proxy, exc)
            last = first
        report = last.then(now, held, info or {})
        await self._backend.put(Item(key=key, value=report.to_json(),
                                     expires=utc(now) + REPORT_KEPT))

    async def _reports(self) -> list[_TunnelReport]:
        out = []
        for item in await self._backend.get_range(*_range("/tunnels/")):
            try:
                out.append(_TunnelReport.from_json(item.value))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                log.warning("ignoring unreadable tunnel report %s: %s", item.key.decode(), exc)
        return out

    async def remote_clusters(self) -> list[RemoteCluster]:
        """Remote clusters with ``connection`` judged now: online while a fresh report of
        a proxy lists the leaf's tunnel; ``last_heartbeat``: the last report that did."""
        now = self._clock.now().timestamp()
        online: set[str] = set()
        beats: dict[str, float] = {}
        said: dict[str, tuple[float, dict[str, str]]] = {}  # leaf -> its newest word
        for report in await self._reports():
            for leaf, fields in report.info.items():
                if report.time > said.get(leaf, (0.0, {}))[0]:
                    said[leaf] = (report.time, fields)
            if now - report.time <= ONLINE_WITHIN.total_seconds():
                online.update(report.leaves)
            for leaf, t in [*((leaf, report.time) for leaf in report.leaves),
                            *report.gone.items()]:
                if t > beats.get(leaf, 0.0):
                    beats[leaf] = t
        out = []
        for rc in await self.remotes.list():
            name = rc.metadata.name
            beat = utc(beats[name]) if name in beats else None
            kept = rc.status.last_heartbeat  # written by versions before these reports
            if beat is None or (kept is not None and kept > beat):
                beat = kept
            fields = said.get(name, (0.0, {}))[1]
            status = RemoteClusterStatus(connection="online" if name in online else "offline",
                                         last_heartbeat=beat,
                                         session_recording=fields.get("session_recording")
                                         or None, version=fields.get("version") or None,
                                         proxy_addr=fields.get("proxy_addr") or None)
            out.append(rc.model_copy(update={"status": status}))
        return out


def _range(prefix: str) -> tuple[bytes, bytes]:
    raw = prefix.encode()
    return raw, prefix_end(raw)
