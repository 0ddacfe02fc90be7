"""The node store's indexes: listing pages in (hostname, name) order, finding a node by
hostname or address, and staying in step with every write, with expiry and with nodes
stored before the indexes existed. Runs on the memory, SQLite and etcd backends."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatehouse.backend import (
    Backend,
    EtcdBackend,
    MemoryBackend,
    SQLiteBackend,
    open_backend,
    prefix_end,
)
from gatehouse.clock import FakeClock
from gatehouse.errors import AlreadyExists, GatehouseError, NotFound
from gatehouse.services.nodes import COALESCED, NodeStore
from gatehouse.services.resources import ResourceStore
from gatehouse.types.node import Node, NodeSpec, NodeStatus
from gatehouse.types.resource import Metadata
from gatehouse.types.yaml_io import to_json_obj
from tests import etcdserver
from tests.services.reads import CountingReads, CountingWrites

TTL = dt.timedelta(seconds=30)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite", "etcd"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
                  ) -> AsyncIterator[Backend]:
    if request.param == "etcd":
        backend: Backend = await EtcdBackend.open(etcdserver.shared().settings(), clock=clock)
    else:
        backend = await open_backend(request.param, path=tmp_path / "b.db", clock=clock)
    yield backend
    await backend.close()


@pytest.fixture
def store(backend: Backend) -> NodeStore:
    return NodeStore(backend)


def node(name: str, hostname: str, addr: str = "10.0.0.1:22", clock: FakeClock | None = None,
         **labels: str) -> Node:
    """A node as a heartbeat stores it (expiring TTL after clock's now), or without expiry."""
    now = clock.now() if clock else None
    return Node(metadata=Metadata(name=name, labels=labels,
                                  expires=now + TTL if now else None),
                spec=NodeSpec(hostname=hostname, addr=addr, cluster="c1", host_id=name),
                status=NodeStatus(last_heartbeat=now))


def names(stored: list[bytes]) -> list[str]:
    return [json.loads(raw)["metadata"]["name"] for raw in stored]


def everyone(labels: Mapping[str, str]) -> bool:
    return True


async def test_listing_is_the_stored_resource_json_by_hostname_then_name(
        store: NodeStore, clock: FakeClock) -> None:
    nodes = [node("n3", "web"), node("n1", "web"), node("n2", "db", clock=clock, env="prod")]
    for n in nodes:
        await store.upsert(n)
    listed = await store.select(everyone)
    assert names(listed) == ["n2", "n1", "n3"]
    # The JSON the API sends is the resource's, as to_json_obj shapes it.
    assert [json.loads(raw) for raw in listed] == [to_json_obj(n) for n in
                                                   (nodes[2], nodes[1], nodes[0])]


async def test_key_order_is_the_order_of_hostname_then_name(store: NodeStore) -> None:
    # Prefixes, bytes below and above the separator, NUL, non-ASCII: the byte order of
    # the index keys must still be Python's order of (hostname, name).
    hostnames = ["a", "a-b", "a/b", "a\x00", "a\x00b", "a\x01", "ab", "é", "\U0001f600", "A",
                 "a b", "a\x00\x00"]
    expected = []
    for i, hostname in enumerate(hostnames):
        for name in (f"z{i}", f"a{i}"):
            await store.upsert(node(name, hostname))
            expected.append((hostname, name))
    assert names(await store.select(everyone)) == [name for _, name in sorted(expected)]
    for hostname in hostnames:  # an exact match, never a prefix
        assert sorted(n.metadata.name for n in await store.by_hostname(hostname)) == sorted(
            name for h, name in expected if h == hostname)


async def test_a_limit_stops_the_scan_and_pages_match_the_whole(store: NodeStore) -> None:
    for i in range(50):
        await store.upsert(node(f"n{i:02d}", f"host-{i % 10}", team="a" if i % 7 else "b"))
    whole = await store.select(everyone)
    assert len(whole) == 50
    for limit in (1, 3, 10, 49, 50, 51):
        assert await store.select(everyone, limit) == whole[:limit]
    # A sparse filter makes the scan read several batches, each larger than the last.
    team_b = await store.select(lambda labels: labels.get("team") == "b")
    assert len(team_b) == 8
    for limit in (1, 2, 5, 8, 9):
        assert await store.select(lambda labels: labels.get("team") == "b", limit) == \
            team_b[:limit]


async def test_the_filter_is_asked_once_per_label_set(store: NodeStore) -> None:
    for i in range(20):
        await store.upsert(node(f"n{i:02d}", f"h{i}", env="prod" if i % 2 else "dev", x="1"))
    asked: list[dict[str, str]] = []

    def wanted(labels: Mapping[str, str]) -> bool:
        asked.append(dict(labels))
        return labels["env"] == "prod"

    assert len(await store.select(wanted)) == 10
    assert sorted(asked, key=str) == [{"env": "dev", "x": "1"}, {"env": "prod", "x": "1"}]


async def test_find_by_hostname_and_by_address(store: NodeStore) -> None:
    await store.upsert(node("n1", "db", "10.0.0.1:22"))
    await store.upsert(node("n2", "db", "10.0.0.2:22"))
    await store.upsert(node("n3", "db1", "10.0.0.1:2222"))
    assert [n.metadata.name for n in await store.by_hostname("db")] == ["n1", "n2"]
    assert [n.metadata.name for n in await store.by_addr("10.0.0.1:22")] == ["n1"]
    assert await store.by_hostname("d") == [] and await store.by_addr("10.0.0.1:2") == []
    assert await store.by_hostname("") == [] and await store.by_addr("") == []


async def test_a_changed_node_leaves_no_old_index_entries(store: NodeStore,
                                                          backend: Backend) -> None:
    await store.upsert(node("n1", "old", "10.0.0.1:22", env="a"))
    await store.upsert(node("n1", "new", "10.0.0.2:22", env="b"))
    assert await store.by_hostname("old") == [] and await store.by_addr("10.0.0.1:22") == []
    [found] = await store.by_hostname("new")
    assert found == await store.get("n1") == (await store.by_addr("10.0.0.2:22"))[0]
    assert await store.select(lambda labels: labels == {"env": "a"}) == []
    assert len(await index_items(backend)) == 2
    await store.update(node("n1", "newer", "10.0.0.2:22"))
    assert [n.spec.hostname for n in await store.list()] == ["newer"]
    assert await store.by_hostname("new") == []


async def test_a_steady_heartbeat_is_one_write_and_no_read(backend: Backend,
                                                          clock: FakeClock) -> None:
    counting = CountingReads(backend)
    store = NodeStore(counting)  # type: ignore[arg-type]
    await store.upsert(node("n1", "db", "10.0.0.1:22", clock))
    read_once = counting.reads
    for _ in range(3):
        clock.advance(dt.timedelta(seconds=10))
        await store.upsert(node("n1", "db", "10.0.0.1:22", clock))
    assert counting.reads == read_once
    assert (await store.get("n1")).status.last_heartbeat == clock.now()
    # A heartbeat that moves the address reads the stored node, to drop its old index.
    await store.upsert(node("n1", "db", "10.0.0.2:22", clock))
    assert counting.reads > read_once
    assert await store.by_addr("10.0.0.1:22") == []
    assert len(await index_items(backend)) == 2


async def test_a_stale_address_index_item_finds_no_node(backend: Backend,
                                                        clock: FakeClock) -> None:
    """Two stores on one backend, as two auths: the node moves through the second and
    back through the first, whose unconditional write leaves the second's address
    item behind; looking that address up finds nothing."""
    first, second = NodeStore(backend), NodeStore(backend)
    await first.upsert(node("n1", "db", "10.0.0.1:22", clock))
    await second.upsert(node("n1", "db", "10.0.0.2:22", clock))
    await first.upsert(node("n1", "db", "10.0.0.1:22", clock))
    assert (await first.get("n1")).spec.addr == "10.0.0.1:22"
    assert await first.by_addr("10.0.0.2:22") == []
    assert [n.metadata.name for n in await first.by_addr("10.0.0.1:22")] == ["n1"]


async def test_bulk_registration_writes_whole_batches(store: NodeStore, backend: Backend,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "max_atomic_writes", 9)  # three nodes to a batch
    await store.create_many([node(f"n{i}", f"h{i}", f"10.0.0.{i}:22") for i in range(7)])
    assert names(await store.select(everyone)) == [f"n{i}" for i in range(7)]
    assert [n.metadata.name for n in await store.by_addr("10.0.0.5:22")] == ["n5"]
    with pytest.raises(AlreadyExists):  # n7, n8 new, n6 taken: that batch is not written
        await store.create_many([node("n7", "h7"), node("n6", "h6"), node("n8", "h8")])
    assert await store.count() == 7 and await store.by_hostname("h7") == []


async def test_create_update_delete_keep_their_contracts(store: NodeStore,
                                                         backend: Backend) -> None:
    with pytest.raises(NotFound):
        await store.update(node("n1", "db"))
    await store.create(node("n1", "db"))
    with pytest.raises(AlreadyExists, match="node n1 already exists"):
        await store.create(node("n1", "web"))
    assert [n.spec.hostname for n in await store.by_hostname("db")] == ["db"]
    await store.delete("n1")
    with pytest.raises(NotFound, match="node n1 not found"):
        await store.delete("n1")
    assert await store.select(everyone) == [] and await store.by_addr("10.0.0.1:22") == []
    assert await index_items(backend) == []
    assert await store.count() == 0


async def test_expired_nodes_vanish_from_every_index(store: NodeStore, backend: Backend,
                                                     clock: FakeClock) -> None:
    await store.upsert(node("n1", "db", clock=clock))
    clock.advance(TTL / 2)
    await store.upsert(node("n2", "db", "10.0.0.2:22", clock=clock))  # expires later
    assert await store.count() == 2
    clock.advance(TTL / 2)
    assert names(await store.select(everyone)) == ["n2"]
    assert [n.metadata.name for n in await store.by_hostname("db")] == ["n2"]
    assert await store.by_addr("10.0.0.1:22") == []
    assert await store.count() == 1
    await backend.sweep_expired()
    assert len(await index_items(backend)) == 2  # n2's two
    # The same node heartbeating again after expiring is indexed again.
    await store.upsert(node("n1", "db", clock=clock))
    assert names(await store.select(everyone)) == ["n1", "n2"]


async def test_many_nodes_register_and_index_in_batches_the_backend_takes(
        store: NodeStore, backend: Backend, clock: FakeClock) -> None:
    """More nodes than one atomic write takes (on etcd: 128 operations, two for each
    expiring item), registered in bulk and indexed from an earlier version's store."""
    many = backend.max_atomic_writes + 7
    await store.create_many([node(f"n{i:04d}", f"h{i}", f"10.0.{i // 250}.{i % 250}:22",
                                  clock) for i in range(many)])
    assert await store.count() == many
    assert [n.metadata.name for n in await store.by_hostname(f"h{many - 1}")] == [
        f"n{many - 1:04d}"]
    unindexed = ResourceStore(backend, "node", Node)
    for i in range(many):
        await unindexed.upsert(node(f"old{i:04d}", f"old-h{i}", clock=clock))
    assert await NodeStore(backend).index_existing() == 2 * many
    assert [n.metadata.name for n in await store.by_hostname("old-h3")] == ["old0003"]


async def test_nodes_stored_before_the_indexes_are_indexed_once(store: NodeStore,
                                                                backend: Backend) -> None:
    unindexed = ResourceStore(backend, "node", Node)  # as an earlier version stored them
    for i in range(3):
        await unindexed.upsert(node(f"n{i}", f"h{2 - i}"))
    assert await store.select(everyone) == []
    assert await store.index_existing() == 3
    assert names(await store.select(everyone)) == ["n2", "n1", "n0"]
    await unindexed.upsert(node("n9", "h9"))
    assert await store.index_existing() == 0  # done once: later writes go through the store
    assert [n.metadata.name for n in await store.by_hostname("h0")] == ["n2"]


async def index_items(backend: Backend) -> list[bytes]:
    return [i.key for i in await backend.get_range(b"/node_index/", prefix_end(b"/node_index/"))
            if i.key != b"/node_index/version"]


# A random history of heartbeats, edits, removals and expiry, checked against a dict.
HOSTS = st.sampled_from(["a", "a-b", "a\x00b", "b", "é"])
ADDRS = st.sampled_from(["10.0.0.1:22", "10.0.0.2:22"])
NAMES = st.sampled_from(["n1", "n2", "n3", "n4"])
OPS = st.lists(st.one_of(
    st.tuples(st.just("upsert"), NAMES, HOSTS, ADDRS, st.booleans(), st.booleans()),
    st.tuples(st.just("delete"), NAMES),
    st.tuples(st.just("advance")),
    st.tuples(st.just("sweep")),
), max_size=25)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, limit=st.integers(0, 4))
@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_matches_a_dict_model(kind: str, tmp_path: Path, ops: list[tuple[object, ...]],
                                    limit: int) -> None:
    clock = FakeClock()
    backend: Backend
    if kind == "memory":
        backend = await MemoryBackend.open(clock=clock)
    else:
        backend = await SQLiteBackend.open(tmp_path / f"{uuid.uuid4().hex}.db", clock=clock)
    store = NodeStore(backend)
    model: dict[str, Node] = {}
    try:
        for op in ops:
            match op:
                case ("upsert", str(name), str(host), str(addr), bool(expiring), bool(prod)):
                    n = node(name, host, addr, clock if expiring else None,
                             env="prod" if prod else "dev")
                    await store.upsert(n)
                    model[name] = n
                case ("delete", str(name)):
                    if name in model:
                        await store.delete(name)
                        del model[name]
                    else:
                        with pytest.raises(NotFound):
                            await store.delete(name)
                case ("advance",):
                    clock.advance(TTL)
                    model = {k: n for k, n in model.items() if not n.is_expired(clock.now())}
                case ("sweep",):
                    await backend.sweep_expired()
        ordered = sorted(model.values(), key=lambda n: (n.spec.hostname, n.metadata.name))
        prod = [n for n in ordered if n.metadata.labels["env"] == "prod"]
        assert names(await store.select(everyone, limit)) == [
            n.metadata.name for n in ordered][:limit or None]
        assert names(await store.select(lambda labels: labels["env"] == "prod", limit)) == [
            n.metadata.name for n in prod][:limit or None]
        for host in ("a", "a-b", "a\x00b", "b", "é"):
            assert await store.by_hostname(host) == [n for n in ordered if n.spec.hostname == host]
        for addr in ("10.0.0.1:22", "10.0.0.2:22"):
            assert await store.by_addr(addr) == sorted(
                (n for n in ordered if n.spec.addr == addr), key=lambda n: n.metadata.name)
        # Two index items per live node, none left over by an edit or a removal.
        await backend.sweep_expired()
        assert len(await index_items(backend)) == 2 * len(model)
    finally:
        await backend.close()


async def test_steady_heartbeats_of_many_nodes_share_writes(backend: Backend,
                                                            clock: FakeClock) -> None:
    """60 nodes heartbeating at once, each after its first (which indexes it): three
    writes of 20 nodes, not 60; every node is stored with its new heartbeat."""
    counting = CountingWrites(backend)
    store = NodeStore(counting)  # type: ignore[arg-type]
    hosts = [(f"n{i}", f"h{i}", f"10.0.0.{i}:22") for i in range(3 * COALESCED)]
    for name, hostname, addr in hosts:
        await store.upsert(node(name, hostname, addr, clock))
    first = counting.writes
    clock.advance(dt.timedelta(seconds=10))
    await asyncio.gather(*(store.upsert(node(name, hostname, addr, clock))
                           for name, hostname, addr in hosts))
    assert counting.writes - first == 3
    for name, _, _ in hosts:
        assert (await store.get(name)).status.last_heartbeat == clock.now()
    assert len(await index_items(backend)) == 2 * len(hosts)


async def test_a_heartbeat_waits_at_most_the_window_for_company(backend: Backend,
                                                                clock: FakeClock) -> None:
    store = NodeStore(backend, coalesce=0.05)
    await store.upsert(node("n1", "db", "10.0.0.1:22", clock))
    begun = time.monotonic()
    await store.upsert(node("n1", "db", "10.0.0.1:22", clock))
    assert 0.04 <= time.monotonic() - begun < 1.0


async def test_a_failed_shared_write_fails_every_heartbeat_of_it(backend: Backend,
                                                                 clock: FakeClock) -> None:
    store = NodeStore(backend)
    for i in range(3):
        await store.upsert(node(f"n{i}", f"h{i}", f"10.0.0.{i}:22", clock))
    await backend.close()
    results = await asyncio.gather(*(store.upsert(node(f"n{i}", f"h{i}", f"10.0.0.{i}:22",
                                                       clock)) for i in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(r, GatehouseError) for r in results), results


async def test_the_later_of_two_pending_heartbeats_of_a_node_wins(store: NodeStore,
                                                                  clock: FakeClock) -> None:
    await store.upsert(node("n1", "db", "10.0.0.1:22", clock, v="0"))
    await asyncio.gather(store.upsert(node("n1", "db", "10.0.0.1:22", clock, v="1")),
                         store.upsert(node("n1", "db", "10.0.0.1:22", clock, v="2")))
    assert (await store.get("n1")).metadata.labels == {"v": "2"}
    assert names(await store.select(lambda labels: labels == {"v": "2"})) == ["n1"]


async def test_a_move_after_a_pending_heartbeat_is_not_undone_by_it(store: NodeStore,
                                                                    clock: FakeClock) -> None:
    """A heartbeat waiting for company, then one that moves the node: the move is
    written after the wait, so the node ends at its new address with no old index."""
    await store.upsert(node("n1", "db", "10.0.0.1:22", clock))
    await asyncio.gather(store.upsert(node("n1", "db", "10.0.0.1:22", clock)),
                         store.upsert(node("n1", "db", "10.0.0.2:22", clock)))
    assert (await store.get("n1")).spec.addr == "10.0.0.2:22"
    assert await store.by_addr("10.0.0.1:22") == []
    assert [n.metadata.name for n in await store.by_addr("10.0.0.2:22")] == ["n1"]
