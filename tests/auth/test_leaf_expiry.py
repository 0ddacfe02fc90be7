"""auth_service.remote_cluster_offline_ttl: the root removes a leaf offline longer than
that, audited; 0 keeps every leaf. The decision over plain values, then the sweep on an
auth with a fake clock (no waiting)."""

from __future__ import annotations

import datetime as dt

from gatehouse.auth import trustjoin
from gatehouse.auth.leafexpiry import Expired, expired_leaves
from gatehouse.auth.leafsweep import remove_expired_leaves
from gatehouse.auth.server import AuthServer
from gatehouse.clock import FakeClock
from gatehouse.types.remote_cluster import RemoteCluster, RemoteClusterStatus
from gatehouse.types.resource import Metadata
from tests.auth.samples import leaf_host_ca

HOUR = dt.timedelta(hours=1)
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
TTL = 720 * HOUR


def _rc(name: str, connection: str = "offline", beat: dt.datetime | None = None
        ) -> RemoteCluster:
    return RemoteCluster(metadata=Metadata(name=name), status=RemoteClusterStatus(
        connection=connection, last_heartbeat=beat))  # type: ignore[arg-type]


def test_an_offline_leaf_expires_once_past_the_ttl_of_its_last_heartbeat() -> None:
    leaves = [_rc("old", beat=T0), _rc("recent", beat=T0 + HOUR)]
    assert expired_leaves(leaves, {}, T0 + TTL, TTL) == []  # exactly the TTL: kept
    assert expired_leaves(leaves, {}, T0 + TTL + dt.timedelta(seconds=1), TTL) == [
        Expired("old", T0)]


def test_online_leaves_and_a_zero_ttl_keep_everything() -> None:
    far = T0 + 100 * TTL
    assert expired_leaves([_rc("up", "online", T0)], {}, far, TTL) == []
    assert expired_leaves([_rc("old", beat=T0)], {}, far, dt.timedelta(0)) == []


def test_a_leaf_never_heard_from_counts_from_its_join() -> None:
    never = _rc("never")
    assert expired_leaves([never], {"never": T0}, T0 + TTL + HOUR, TTL) == [
        Expired("never", T0)]
    assert expired_leaves([never], {"never": T0}, T0 + TTL - HOUR, TTL) == []
    assert expired_leaves([never], {}, T0 + 100 * TTL, TTL) == []  # nothing to count from


async def _joined(server: AuthServer, name: str) -> None:
    token = await server.create_token("trusted_cluster", HOUR)
    await trustjoin.accept_leaf(server, token.secret, leaf_host_ca(name), "10.0.0.9")


async def test_the_sweep_removes_and_audits_an_expired_leaf(server: AuthServer,
                                                            clock: FakeClock) -> None:
    await _joined(server, "gone1")
    await _joined(server, "kept1")
    clock.advance(TTL - HOUR)
    await server.trust.tunnels_held("proxy-1", ["kept1"])  # "kept1" heard from since
    clock.advance(2 * HOUR)
    assert await remove_expired_leaves(server, dt.timedelta(0)) == []  # 0: keep forever
    assert await remove_expired_leaves(server, TTL) == ["gone1"]
    assert [rc.metadata.name for rc in await server.trust.remote_clusters()] == ["kept1"]
    assert await server.trust.leaf_ca("gone1") is None  # its tunnel is refused from now on
    [event] = (await server.audit.search(types=["remote_cluster.expire"])).events
    assert (event.code, event.fields["leaf"], event.fields["ttl"]) == ("TT006I", "gone1", "720h")
    assert "offline since" in event.message and "remote_cluster_offline_ttl" in event.message
    assert await remove_expired_leaves(server, TTL) == []  # nothing left to remove
    await _joined(server, "gone1")  # and the name can join again
    assert {rc.metadata.name for rc in await server.trust.remote_clusters()} == {"gone1", "kept1"}
