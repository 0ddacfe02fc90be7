"""A root's view of its leaves' tunnels, from its proxies' reports (fake clock, memory
backend): online while a fresh report lists the tunnel, last_heartbeat kept after."""

from __future__ import annotations

import datetime as dt

from gatehouse.auth.server import AuthServer
from gatehouse.backend import Backend
from gatehouse.clock import FakeClock
from gatehouse.services.trust import ONLINE_WITHIN, REPORT_KEPT
from gatehouse.types.remote_cluster import RemoteCluster
from gatehouse.types.resource import Metadata

SECOND = dt.timedelta(seconds=1)


async def leaves(server: AuthServer, *names: str) -> None:
    for name in names:
        await server.trust.remotes.create(RemoteCluster(metadata=Metadata(name=name)))


async def status(server: AuthServer) -> dict[str, tuple[str, dt.datetime | None]]:
    return {rc.metadata.name: (rc.status.connection, rc.status.last_heartbeat)
            for rc in await server.trust.remote_clusters()}


async def test_a_joined_leaf_is_offline_until_a_proxy_holds_its_tunnel(
    server: AuthServer, clock: FakeClock,
) -> None:
    await leaves(server, "a", "b")
    assert await status(server) == {"a": ("offline", None), "b": ("offline", None)}
    await server.trust.tunnels_held("proxy-1", ["a"])
    assert await status(server) == {"a": ("online", clock.now()), "b": ("offline", None)}


async def test_each_report_refreshes_every_leaf_it_lists(server: AuthServer,
                                                         clock: FakeClock) -> None:
    await leaves(server, "a", "b")
    await server.trust.tunnels_held("proxy-1", ["a", "b"])
    clock.advance(5 * SECOND)
    await server.trust.tunnels_held("proxy-1", ["a", "b"])
    assert await status(server) == {"a": ("online", clock.now()), "b": ("online", clock.now())}


async def test_a_dropped_tunnel_is_offline_at_once_with_its_last_heartbeat(
    server: AuthServer, clock: FakeClock,
) -> None:
    await leaves(server, "a", "b")
    await server.trust.tunnels_held("proxy-1", ["a", "b"])
    seen = clock.now()
    clock.advance(2 * SECOND)
    await server.trust.tunnels_held("proxy-1", ["b"])
    assert await status(server) == {"a": ("offline", seen), "b": ("online", clock.now())}
    clock.advance(5 * SECOND)
    await server.trust.tunnels_held("proxy-1", ["b"])  # and it stays remembered
    assert (await status(server))["a"] == ("offline", seen)


async def test_leaves_go_offline_when_their_proxy_stops_reporting(
    server: AuthServer, clock: FakeClock,
) -> None:
    await leaves(server, "a")
    await server.trust.tunnels_held("proxy-1", ["a"])
    seen = clock.now()
    clock.advance(ONLINE_WITHIN)
    assert (await status(server))["a"] == ("online", seen)
    clock.advance(SECOND)  # the proxy died (its auth lives on): no more reports
    assert (await status(server))["a"] == ("offline", seen)


async def test_a_leaf_is_online_while_any_proxy_holds_its_tunnel(
    server: AuthServer, clock: FakeClock,
) -> None:
    await leaves(server, "a")
    await server.trust.tunnels_held("proxy-1", ["a"])
    await server.trust.tunnels_held("proxy-2", ["a"])
    clock.advance(SECOND)
    await server.trust.tunnels_held("proxy-1", [])  # its tunnel to proxy-1 dropped
    assert (await status(server))["a"][0] == "online"
    await server.trust.tunnels_held("proxy-2", [])
    assert (await status(server))["a"][0] == "offline"


async def test_a_restarted_proxy_forgets_the_tunnels_it_held(server: AuthServer,
                                                             clock: FakeClock) -> None:
    await leaves(server, "a")
    await server.trust.tunnels_held("proxy-1", ["a"])
    seen = clock.now()
    clock.advance(3 * SECOND)
    await server.trust.tunnels_held("proxy-1", [])  # its first report after the restart
    assert await status(server) == {"a": ("offline", seen)}


async def test_a_report_is_one_write_however_many_leaves(server: AuthServer,
                                                         backend: Backend) -> None:
    names = [f"leaf-{i}" for i in range(200)]
    await leaves(server, *names)
    before = {i.key: i.revision for i in await backend.get_range(b"/", b"\xff")}
    await server.trust.tunnels_held("proxy-1", names)
    after = {i.key: i.revision for i in await backend.get_range(b"/", b"\xff")}
    assert [k for k in after if before.get(k) != after[k]] == [b"/tunnels/proxy-1"]
    assert all(s == "online" for s, _ in (await status(server)).values())


async def test_reported_names_that_are_not_leaves_create_nothing(server: AuthServer) -> None:
    await leaves(server, "a")
    await server.trust.tunnels_held("proxy-1", ["a", "not-joined", "../x"])
    assert set(await status(server)) == {"a"}


async def test_a_leaf_gone_from_its_proxy_is_remembered_only_so_long(
    server: AuthServer, clock: FakeClock,
) -> None:
    await leaves(server, "a", "b")
    await server.trust.tunnels_held("proxy-1", ["a", "b"])
    clock.advance(SECOND)
    await server.trust.tunnels_held("proxy-1", ["b"])
    clock.advance(REPORT_KEPT)
    await server.trust.tunnels_held("proxy-1", ["b"])
    assert (await status(server))["a"] == ("offline", None)
