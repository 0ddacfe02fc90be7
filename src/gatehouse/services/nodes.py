"""Nodes in storage, indexed so that listing a page and finding one node stay cheap
with 100,000 nodes.

Besides the resource at ``/nodes/<name>`` (the host id), each node has two index
items, written in the same atomic write and expiring with it:

- ``/node_index/hostname/<hostname>\\0<name>``: the node's labels (compact JSON with
  sorted keys), a newline, then the resource's JSON. Keys sort as the listing does
  (by hostname, then name), so a page is a range read that stops at its limit, and
  a filter reads the labels without parsing the resource.
- ``/node_index/addr/<addr>\\0<name>``, empty: finds the node by the address it advertises.

In a key, a hostname or address is its UTF-8 with each NUL doubled as ``\\0\\xff``,
then a NUL: byte order then matches the order of (text, name).

The node tunnels each proxy holds are one item per proxy, ``/node_tunnels/<proxy>``,
rewritten by each of its reports and expiring TUNNEL_REPORT_FRESH after it: a node's
tunnel is up while a live item lists it (a proxy that stops reporting drops its nodes
by itself).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TypeVar

from gatehouse.backend import Backend, Item, Write, prefix_end
from gatehouse.errors import AlreadyExists, BadParameter, CompareFailed, NotFound
from gatehouse.services._coalesce import Coalescer
from gatehouse.services.resources import ResourceStore
from gatehouse.types.node import Node

__all__ = ["TUNNEL_REPORT_FRESH", "NodeStore"]

_INDEX = b"/node_index/"
_BY_HOSTNAME = _INDEX + b"hostname/"
_BY_ADDR = _INDEX + b"addr/"
_TUNNELS = b"/node_tunnels/"
# A proxy reports every tunnel.liveness.REPORT_INTERVAL; this spans a few missed reports.
TUNNEL_REPORT_FRESH = dt.timedelta(seconds=15)
_VERSION = _INDEX + b"version"  # a marker: present once every stored node is indexed
ATTEMPTS = 5  # writes retried when the node changes between our read and our write
MAX_BATCH = 10_000  # index items per range read while scanning
NODE_WRITES = 3  # a new node's atomic write: the node and its two index items
_T = TypeVar("_T")
REMEMBERED = 200_000  # nodes whose index keys upsert remembers (~40 MB at most)
# Steady heartbeats wait up to COALESCE seconds to be written with others (_coalesce.py),
# COALESCED nodes at most to a write, and no more than the backend takes in one.
COALESCE = 0.05
COALESCED = 20

Labels = Mapping[str, str]


def _part(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass").replace(b"\0", b"\0\xff") + b"\0"


def _index_keys(hostname: str, addr: str, name: str) -> tuple[bytes, bytes]:
    """A node's hostname and address index keys."""
    return (_BY_HOSTNAME + _part(hostname) + name.encode(),
            _BY_ADDR + _part(addr) + name.encode())


async def _matching(backend: Backend, index: bytes, text: str) -> list[Item]:
    """The index items of the nodes whose indexed text is ``text`` exactly.

    Names start with a letter or digit, never 0xff, so ``text`` then 0xff ends the
    range before a longer text that starts with ``text`` and a NUL.
    """
    prefix = index + _part(text)
    return await backend.get_range(prefix, prefix + b"\xff")


class NodeStore(ResourceStore[Node]):
    """Nodes as every resource store keeps them, plus the indexes; every change to a
    node changes its index items in the same atomic write."""

    def __init__(self, backend: Backend, *, coalesce: float = COALESCE) -> None:
        super().__init__(backend, "node", Node)
        self._indexed: dict[str, tuple[bytes, bytes]] = {}  # by upsert: name -> index keys
        self._steady = Coalescer(backend, window=coalesce,
                                 most=min(COALESCED, backend.max_atomic_writes // NODE_WRITES))

    # --- writes ---------------------------------------------------------------------------

    async def create(self, res: Node) -> Node:
        def writes(old: Item | None) -> list[Write]:
            if old is not None:
                raise AlreadyExists(f"node {res.metadata.name} already exists")
            return self._writes(res, None)

        await self._change(res.metadata.name, writes)
        return res

    async def create_many(self, nodes: Sequence[Node]) -> None:
        """Register new nodes in bulk (the benchmark registers 100,000 this way): one
        atomic write per batch the backend takes; AlreadyExists, writing none of that
        batch, if one of them is registered already."""
        for batch in self._batches(nodes):
            try:
                await self._backend.atomic_write(
                    [w for node in batch for w in self._writes(node, None)])
            except CompareFailed:
                raise AlreadyExists("a node of this batch is registered already") from None

    async def upsert(self, res: Node) -> Node:
        """Store a node's heartbeat. One that moves no index key (the same hostname and
        address as stored: nearly all) is written unconditionally: the backend need not
        check the stored revision, and PostgreSQL writes it in one statement instead of
        a transaction of six round trips. When this store wrote the node's index keys
        last and they stay, it does not read the stored node first either: a heartbeat
        is then one write, shared with the other nodes' heartbeats of the next COALESCE
        seconds. (A heartbeat that moved the address through another auth in between,
        or two at once with different addresses, can leave a stale address index item:
        it expires with the node, and :meth:`by_addr` skips it.)"""
        name = res.metadata.name
        keys = _index_keys(res.spec.hostname, res.spec.addr, name)
        if self._indexed.get(name) == keys:
            await self._steady.write(name, self._writes(res, None, refresh=True))
        else:
            await self._change(name, lambda old: self._writes(res, old, refresh=True))
            if len(self._indexed) >= REMEMBERED:
                self._indexed.clear()  # those gone since: forgotten with the rest
            self._indexed[name] = keys
        return res

    async def update(self, res: Node) -> Node:
        def writes(old: Item | None) -> list[Write]:
            if old is None:
                raise NotFound(f"node {res.metadata.name} not found")
            return self._writes(res, old)

        await self._change(res.metadata.name, writes)
        return res

    async def delete(self, name: str) -> None:
        def writes(old: Item | None) -> list[Write]:
            if old is None:
                raise NotFound(f"node {name} not found")
            return [Write(old.key, None, old.revision),
                    *(Write(key) for key in self._old_index_keys(old))]

        await self._change(name, writes)

    async def tunnels_held(self, proxy: str, host_ids: Iterable[str],
                           now: dt.datetime) -> None:
        """Record that ``proxy`` holds the tunnels of ``host_ids`` (and of no other node)."""
        if not proxy or "/" in proxy:
            raise BadParameter(f"invalid proxy name {proxy!r} in a tunnel report")
        key = _TUNNELS + proxy.encode()
        await self._backend.put(Item(key, json.dumps(sorted(set(host_ids))).encode(),
                                     now + TUNNEL_REPORT_FRESH))

    async def tunnels_up(self) -> frozenset[str]:
        """The host ids of the nodes whose tunnel a proxy reported holding lately."""
        up: set[str] = set()
        for item in await self._backend.get_range(_TUNNELS, prefix_end(_TUNNELS)):
            with contextlib.suppress(ValueError, TypeError):  # unreadable: none held
                up.update(str(h) for h in json.loads(item.value))
        return frozenset(up)

    async def index_existing(self) -> int:
        """Index the nodes stored before the indexes existed, once; returns how many."""
        with contextlib.suppress(NotFound):
            await self._backend.get(_VERSION)
            return 0
        items = await self._backend.get_range(self._prefix, prefix_end(self._prefix))
        nodes = []
        for item in items:
            with contextlib.suppress(BadParameter):  # unreadable: never listed anyway
                nodes.append((self._load(item), item))
        for batch in self._batches(nodes):
            try:
                await self._backend.atomic_write(
                    [w for node, item in batch for w in self._writes(node, item)])
            except CompareFailed:  # some changed meanwhile: their writer indexed them
                for node, item in batch:
                    with contextlib.suppress(CompareFailed):
                        await self._backend.atomic_write(self._writes(node, item))
        await self._backend.put(Item(_VERSION, b"1"))
        return len(nodes)

    def _batches(self, nodes: Sequence[_T]) -> Iterator[Sequence[_T]]:
        """``nodes`` in runs whose writes (NODE_WRITES each) one atomic write takes."""
        size = max(1, self._backend.max_atomic_writes // NODE_WRITES)
        return (nodes[first:first + size] for first in range(0, len(nodes), size))

    async def _current(self, name: str) -> Item | None:
        try:
            return await self._backend.get(self._key(name))
        except NotFound:
            return None

    async def _change(self, name: str, writes: Callable[[Item | None], list[Write]]) -> None:
        """Read the node's current item, then write what ``writes`` makes of it, on the
        condition that the node has not changed in between (else read again)."""
        self._indexed.pop(name, None)
        await self._steady.settled(name)  # a steady heartbeat's write lands first
        for _ in range(ATTEMPTS):
            old = await self._current(name)
            try:
                await self._backend.atomic_write(writes(old))
                return
            except CompareFailed:
                continue
        raise CompareFailed(f"node {name} kept changing while being written; try again")

    def _writes(self, res: Node, old: Item | None, *, refresh: bool = False) -> list[Write]:
        """Store res and its index items; remove the old item's index items it no longer
        has. On the condition that the stored node is still ``old`` (or, with None, that
        there is none), unless ``refresh`` and res leaves no index key of old's behind."""
        item = self._item(res)
        labels = json.dumps(res.metadata.labels, sort_keys=True, separators=(",", ":"))
        by_hostname, by_addr = _index_keys(res.spec.hostname, res.spec.addr, res.metadata.name)
        stale = [] if old is None else [key for key in self._old_index_keys(old)
                                        if key not in (by_hostname, by_addr)]
        expect = None if refresh and not stale else (old.revision if old is not None else 0)
        return [Write(item.key, item, expect),
                Write(by_hostname, Item(by_hostname, labels.encode() + b"\n" + item.value,
                                        item.expires)),
                Write(by_addr, Item(by_addr, b"", item.expires)),
                *(Write(key) for key in stale)]

    def _old_index_keys(self, old: Item) -> tuple[bytes, ...]:
        try:
            stored = json.loads(old.value)
            return _index_keys(str(stored["spec"]["hostname"]), str(stored["spec"]["addr"]),
                               str(stored["metadata"]["name"]))
        except (ValueError, TypeError, KeyError):
            return ()  # unreadable: it was never indexed

    # --- reads ----------------------------------------------------------------------------

    async def count(self) -> int:
        """How many are registered: their address index items, whose values are empty."""
        return len(await self._backend.get_range(_BY_ADDR, prefix_end(_BY_ADDR)))

    async def select(self, wanted: Callable[[Labels], bool], limit: int = 0) -> list[bytes]:
        """The stored JSON of live nodes whose labels ``wanted`` accepts, ordered by
        hostname then name; at most limit (0: all).

        Reads the hostname index in growing batches from the first (all at once without
        a limit), so a page that fills early costs its size, not the number of nodes.
        ``wanted`` is asked once per distinct set of labels.
        """
        if limit < 0:
            raise BadParameter(f"node limit {limit}: expected 0 (no limit) or more")
        verdicts: dict[bytes, bool] = {}
        found: list[bytes] = []
        start, end, batch = _BY_HOSTNAME, prefix_end(_BY_HOSTNAME), limit
        while True:
            items = await self._backend.get_range(start, end, batch)
            for item in items:
                labels, _, node = item.value.partition(b"\n")
                verdict = verdicts.get(labels)
                if verdict is None:
                    verdict = verdicts[labels] = wanted(json.loads(labels))
                if verdict:
                    found.append(node)
                    if len(found) == limit:
                        return found
            if not batch or len(items) < batch:
                return found
            start = items[-1].key + b"\0"  # the next key after the last one read
            batch = min(batch * 4, MAX_BATCH)

    async def by_hostname(self, hostname: str) -> list[Node]:
        """The live nodes named hostname, ordered by name."""
        return [self._load(Item(i.key, i.value.partition(b"\n")[2]))
                for i in await _matching(self._backend, _BY_HOSTNAME, hostname)]

    async def by_addr(self, addr: str) -> list[Node]:
        """The live nodes that advertise addr, ordered by name."""
        nodes = []
        for item in await _matching(self._backend, _BY_ADDR, addr):
            try:
                node = await self.get(item.key.rpartition(b"\0")[2].decode())
            except NotFound:
                continue  # removed since the range read
            if node.spec.addr == addr:  # else a stale index item (see upsert)
                nodes.append(node)
        return nodes
