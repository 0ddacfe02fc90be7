"""The trust store: roots' and leaves' public CAs, and the watch that tells nodes and
proxies when anything a trust snapshot is made of changed (and only then)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from gatehouse.backend import Backend
from gatehouse.clock import FakeClock
from gatehouse.errors import BadParameter, NotFound
from gatehouse.services.resources import ResourceStore
from gatehouse.services.trust import TrustChanges, TrustStore
from gatehouse.types.role import Role, preset_roles
from gatehouse.types.trusted_cluster import TrustedCluster
from gatehouse.types.user import User
from gatehouse.wire.authapi import RootTunnel
from gatehouse.wire.trust import PublicCA

ROOT = "root.example"


def ca(cluster: str, ca_type: str = "host", ssh: str = "ssh-ed25519 AAAA") -> PublicCA:
    return PublicCA(cluster, ca_type, ssh, "-----BEGIN CERTIFICATE-----")


def trusted_cluster(name: str = ROOT) -> TrustedCluster:
    return TrustedCluster.model_validate({
        "metadata": {"name": name},
        "spec": {"enabled": True, "token": "secret", "proxy_addr": f"{name}:3080"}})


async def notices(changes: TrustChanges) -> int:
    """How many change notices arrive before things go quiet."""
    count = 0
    with contextlib.suppress(TimeoutError):
        while True:
            async with asyncio.timeout(0.05):
                await anext(changes)
            count += 1
    return count


async def test_a_leaf_is_joined_with_one_host_ca_and_a_remote_cluster(backend: Backend,
                                                                     clock: FakeClock) -> None:
    store = TrustStore(backend, clock)
    assert await store.leaf_ca("leaf-a") is None
    await store.store_leaf(ca("leaf-a"))
    await store.store_leaf(ca("leaf-a"))  # a join run again keeps the remote cluster
    assert await store.leaf_ca("leaf-a") == ca("leaf-a")
    assert await store.leaf_cas() == [ca("leaf-a")]
    assert [rc.metadata.name for rc in await store.remotes.list()] == ["leaf-a"]
    await store.remove_leaf("leaf-a")
    assert (await store.leaf_ca("leaf-a"), await store.leaf_cas()) == (None, [])
    with pytest.raises(NotFound):
        await store.remotes.get("leaf-a")


async def test_a_root_is_kept_with_its_cas_and_removed_with_them(backend: Backend,
                                                                clock: FakeClock) -> None:
    store = TrustStore(backend, clock)
    with pytest.raises(BadParameter, match="name the trusted_cluster after the root"):
        await store.store_root(trusted_cluster(), [ca("impostor.example", "user")])
    await store.store_root(trusted_cluster(), [ca(ROOT, "user"), ca(ROOT, "host")])
    assert set(await store.root_cas(ROOT)) == {"user", "host"}
    assert [(tc.metadata.name, c) for tc, c in await store.trusted_user_cas()] == \
        [(ROOT, ca(ROOT, "user"))]
    await store.remove_root(ROOT)
    assert (await store.root_cas(ROOT), await store.trusted.list()) == ({}, [])


async def test_the_watch_tells_of_every_change_a_snapshot_is_made_of(backend: Backend,
                                                                     clock: FakeClock) -> None:
    store = TrustStore(backend, clock)
    async with store.watch() as changes:
        await ResourceStore(backend, "role", Role).create(preset_roles()[0])
        await ResourceStore(backend, "user", User).create(
            User.model_validate({"metadata": {"name": "alice"}, "spec": {"roles": ["access"]}}))
        await store.trusted.upsert(trusted_cluster())
        await store.store_root(trusted_cluster("other.example"), [ca("other.example", "user")])
        await store.store_leaf(ca("leaf-a"))
        await store.set_leaf_labels("leaf-a", {"env": "prod"})
        # One notice a change: the root is three (its CA, when it joined, its resource), the
        # leaf two (its CA, its remote_cluster), and its labels one.
        assert await notices(changes) == 9


async def test_the_watch_ignores_what_snapshots_do_not_hold(backend: Backend,
                                                            clock: FakeClock) -> None:
    store = TrustStore(backend, clock)
    await store.store_leaf(ca("leaf-a"))
    async with store.watch() as changes:
        await store.tunnels_held("proxy-1", ["leaf-a"])  # every few seconds: no snapshot
        await store.root_tunnels_reported("proxy-1", [RootTunnel(root=ROOT, up=True)])
        assert await notices(changes) == 0
    with pytest.raises(StopAsyncIteration):  # leaving the context stopped it
        await anext(changes)
