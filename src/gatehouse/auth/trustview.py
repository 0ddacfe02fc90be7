"""The trust snapshot (wire.trust) as this auth sees it: the one place it is built, and
a stream of new ones on every change, for nodes' and proxies' watches."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

from gatehouse.auth.server import AuthServer
from gatehouse.wire.names import WATCH_KEEPALIVE
from gatehouse.wire.trust import RootCluster, TrustSnapshot

__all__ = ["COALESCE", "build_snapshot", "snapshots"]

COALESCE = 0.05  # a burst of changes within this many seconds makes one snapshot


async def build_snapshot(server: AuthServer) -> TrustSnapshot:
    """Everything nodes and proxies decide with."""
    trusted = await server.trust.trusted_user_cas()
    roots = {}
    for tc in await server.trust.trusted.list():
        host = (await server.trust.root_cas(tc.metadata.name)).get("host")
        roots[tc.metadata.name] = RootCluster(
            name=tc.metadata.name, enabled=tc.spec.enabled, proxy_addr=tc.spec.proxy_addr,
            role_map=tuple(tc.spec.role_map), host_ca_tls=host.tls if host else "",
            joined_at=await server.trust.joined_at(tc.metadata.name),
            access=await server.trust.root_access(tc.metadata.name))
    return TrustSnapshot(
        cluster=server.cluster,
        user_cas=(server.cas["user"].public(), *(ca for _, ca in trusted)),
        roots=roots,
        leaf_host_cas={ca.cluster: ca.tls for ca in await server.trust.leaf_cas()},
        leaf_labels={rc.metadata.name: dict(rc.metadata.labels)
                     for rc in await server.trust.remotes.list()},
        roles={r.metadata.name: r for r in await server.roles.list()},
        users=frozenset(u.metadata.name for u in await server.users.list()),
        connectors=frozenset(c.metadata.name for c in await server.oidc.list()),
        record_sessions=server.session_recording != "off",
    )


async def snapshots(server: AuthServer) -> AsyncGenerator[TrustSnapshot | None]:
    """The current snapshot, then a new one after every change (None: no change for
    WATCH_KEEPALIVE seconds, so that a server can notice a vanished client)."""
    async with server.trust.watch() as changes:
        yield await build_snapshot(server)
        while True:
            try:
                async with asyncio.timeout(WATCH_KEEPALIVE):
                    await anext(changes)
            except TimeoutError:
                yield None
                continue
            except StopAsyncIteration:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(COALESCE):
                    async for _ in changes:
                        pass
            yield await build_snapshot(server)
