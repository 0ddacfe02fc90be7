"""A root's view of its leaves' tunnels, from its proxies' reports (fake clock, memory
backend): online while a fresh report lists the tunnel, last_heartbeat kept after. And a
leaf's view of its tunnels to roots, from its own proxies' reports."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from gatehouse.auth import catalog, trustjoin
from gatehouse.auth.server import AuthServer
from gatehouse.backend import Backend
from gatehouse.clock import FakeClock
from gatehouse.errors import BadParameter
from gatehouse.services.trust import ONLINE_WITHIN, REPORT_KEPT
from gatehouse.types.remote_cluster import RemoteCluster
from gatehouse.types.resource import Metadata
from gatehouse.types.trusted_cluster import TrustedCluster
from gatehouse.types.yaml_io import to_json_obj
from gatehouse.wire.authapi import LeafInfo, RootTunnel
from gatehouse.wire.trust import PublicCA

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


# --- a leaf's view of its tunnels to roots (issue 17, items 5 and 6) ---------------------

ROOT = "sso.example.com"
TOKEN = "A" * 22 + "B" * 43  # well formed; the fake root below takes any


class FakeRoot:
    """The root side of joins, as the leaf's auth is handed it: every join succeeds."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.cas = [PublicCA(ROOT, t, f"ssh-{t}", f"pem-{t}") for t in ("user", "host")]

    async def __call__(self, tc: TrustedCluster, leaf_ca: PublicCA) -> list[PublicCA]:
        self.tokens.append(tc.spec.token)
        return self.cas


@pytest.fixture
def fake_root() -> FakeRoot:
    return FakeRoot()


@pytest.fixture
async def leaf(backend: Backend, clock: FakeClock, tmp_path: Path,
               fake_root: FakeRoot) -> AuthServer:
    return await AuthServer.open(backend, clock, "us-east-1a", tmp_path / "recordings",
                                 join_root=fake_root)


def trust(token: str = TOKEN, *, enabled: bool = True) -> TrustedCluster:
    return TrustedCluster.model_validate({
        "metadata": {"name": ROOT},
        "spec": {"token": token, "enabled": enabled, "proxy_addr": "127.0.0.1:3080",
                 "role_map": [{"remote": "access", "local": ["access"]}]}})


async def shown(leaf: AuthServer) -> tuple[str, str]:
    status = (await catalog.status(leaf)).trusted_clusters[ROOT]
    return status.connection, status.detail


async def test_a_trust_is_online_while_a_proxy_reports_its_tunnel_up(
    leaf: AuthServer, clock: FakeClock,
) -> None:
    await trustjoin.upsert_trusted_cluster(leaf, trust(), force=False)
    assert await shown(leaf) == ("offline", "connecting")
    await leaf.trust.root_tunnels_reported("proxy-1", [RootTunnel(root=ROOT, up=True)])
    assert await shown(leaf) == ("online", "")
    clock.advance(SECOND)
    await leaf.trust.root_tunnels_reported("proxy-1", [RootTunnel(
        root=ROOT, up=False, detail="cannot reach the root's proxy at 127.0.0.1:3080")])
    assert await shown(leaf) == ("offline", "cannot reach the root's proxy at 127.0.0.1:3080")
    clock.advance(ONLINE_WITHIN + SECOND)  # the proxy stopped: nobody says anything now
    connection, detail = await shown(leaf)
    assert connection == "offline" and detail.endswith("is the proxy running?"), detail
    await trustjoin.upsert_trusted_cluster(leaf, trust(enabled=False), force=True)
    assert await shown(leaf) == ("disabled", "")


async def test_the_token_a_trust_joined_with_is_kept_and_never_shown(
    leaf: AuthServer, fake_root: FakeRoot,
) -> None:
    assert await trustjoin.upsert_trusted_cluster(leaf, trust(), force=False)
    [shown_tc] = await catalog.get_resources(leaf, "trusted_cluster", ROOT)
    assert isinstance(shown_tc, TrustedCluster) and shown_tc.spec.token == ""
    assert "token" not in to_json_obj(shown_tc)["spec"]
    # The file it was created from, or the shown resource, again: an update, no join.
    assert not await trustjoin.upsert_trusted_cluster(leaf, trust(), force=True)
    assert not await trustjoin.upsert_trusted_cluster(leaf, trust(""), force=True)
    assert fake_root.tokens == [TOKEN]
    assert (await leaf.trust.trusted.get(ROOT)).spec.token == TOKEN


async def test_a_new_token_joins_again_and_a_refused_trust_says_so(
    leaf: AuthServer, clock: FakeClock, fake_root: FakeRoot,
) -> None:
    await trustjoin.upsert_trusted_cluster(leaf, trust(), force=False)
    clock.advance(SECOND)
    await leaf.trust.root_tunnels_reported("proxy-1", [RootTunnel(
        root=ROOT, up=False, detail="the root's proxy closed the tunnel", refused=True)])
    # The root removed this leaf: the old file changes nothing, and says what to run.
    with pytest.raises(BadParameter, match=r"no longer takes this cluster's tunnel .* run "
                                           r"`gatectl create -f` with a new token"):
        await trustjoin.upsert_trusted_cluster(leaf, trust(), force=True)
    assert not await trustjoin.upsert_trusted_cluster(leaf, trust(enabled=False), force=True)
    new = "C" * 22 + "B" * 43
    clock.advance(SECOND)
    assert await trustjoin.upsert_trusted_cluster(leaf, trust(new), force=True)
    assert fake_root.tokens == [TOKEN, new]
    # The refusal was of the tunnel the new join replaced.
    assert await shown(leaf) == ("offline", "connecting")
    assert not await leaf.trust.refused_by(ROOT)
    clock.advance(SECOND)
    await leaf.trust.root_tunnels_reported("proxy-1", [RootTunnel(root=ROOT, up=True)])
    assert await shown(leaf) == ("online", "")


async def test_what_a_leaf_says_of_itself_is_shown_and_kept_while_it_is_away(
    server: AuthServer, clock: FakeClock,
) -> None:
    """`gatectl get rc` shows each leaf's session recording and version (Teleport #7735),
    as the leaf said them over its tunnel; the last word stays once it is offline."""
    await leaves(server, "a", "b")
    said = LeafInfo(session_recording="off", version="0.1.0")
    await server.trust.tunnels_held("proxy-1", ["a", "b"], {"a": said})
    shown = {rc.metadata.name: rc.status for rc in await server.trust.remote_clusters()}
    assert (shown["a"].session_recording, shown["a"].version) == ("off", "0.1.0")
    assert (shown["b"].session_recording, shown["b"].version) == (None, None)
    assert "session_recording" not in to_json_obj(
        next(rc for rc in await server.trust.remote_clusters() if rc.metadata.name == "b")
    )["status"]
    clock.advance(SECOND)
    await server.trust.tunnels_held("proxy-1", ["a"])  # a said nothing new: kept
    clock.advance(SECOND)
    await server.trust.tunnels_held("proxy-1", [])  # a is gone: still shown
    [a] = [rc for rc in await server.trust.remote_clusters() if rc.metadata.name == "a"]
    assert (a.status.connection, a.status.session_recording) == ("offline", "off")
