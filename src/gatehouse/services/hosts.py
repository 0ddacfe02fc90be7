"""Certified hosts: what each host id was certified as, so that it cannot claim more.

A node's heartbeat is accepted only under the name and addresses recorded
here; removing the record (``gatectl rm node/HOST_ID``) revokes the host's
standing with the auth even though its certificate has not expired.

A node name belongs to one host: ``/host_index/name/<nodename>`` holds the host id
of the node that claimed it, written in the same atomic write as the record (and
removed with it). Proxies share names (one `gatehouse start` runs a proxy and a
node under one nodename) and claim none.

Every call a host makes reads its record, and a heartbeat reads its name claim too:
both are read from copies held in memory (:class:`HeldItems`), so a heartbeat costs
the auth one backend write and no read.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import asdict, dataclass, field

from gatehouse.backend import Backend, Item, Write, prefix_end
from gatehouse.clock import Clock
from gatehouse.errors import AccessDenied, AlreadyExists, CompareFailed, NotFound

from .resourcecache import HeldItems

__all__ = ["PREFIX", "HostRecord", "HostRegistry", "name_taken", "not_a_node"]

log = logging.getLogger(__name__)

PREFIX = _HOSTS = b"/hosts/"
_NAMES = b"/host_index/name/"
_INDEXED = b"/host_index/version"  # present once every stored node's name is claimed
ATTEMPTS = 5  # writes retried when the record changes between our read and our write


@dataclass(frozen=True)
class HostRecord:
    role: str
    nodename: str
    addrs: list[str] = field(default_factory=list)
    dns_names: list[str] = field(default_factory=list)  # a server's TLS names


def name_taken(nodename: str, holder: str | None) -> str:
    """Why a host may not take (or keep) ``nodename``, and what the admin can do."""
    if holder is None:
        return f"node name {nodename} is claimed by no host: the node must join again"
    return (f"node name {nodename} is taken by host {holder}; if that node is gone (its "
            f"data_dir wiped), remove it with `gatectl rm node/{holder}`, then join again")


def not_a_node(host_id: str, role: str) -> str:
    """Why ``gatectl rm node/HOST_ID`` may not remove a host certified as ``role`` ("" if
    it is a node): a proxy has its own removal, and the admin credentials are replaced
    by the auth that issued them."""
    if role == "node":
        return ""
    if role == "proxy":
        return (f"host {host_id} is a proxy, not a node: `gatectl rm proxy/{host_id}` "
                "removes a proxy that is gone")
    if role == "admin":
        return (f"host {host_id} is the admin credentials, not a node: the auth replaces "
                "them (and revokes these) when it issues new ones")
    return f"host {host_id} is the cluster's {role} service, not a node"


def _load(item: Item) -> HostRecord:
    return HostRecord(**json.loads(item.value))


class HostRegistry:
    def __init__(self, backend: Backend, clock: Clock) -> None:
        self._backend = backend
        self._records = HeldItems(backend, _HOSTS, _load, clock)
        self._claims = HeldItems(backend, _NAMES, lambda item: item.value.decode(), clock)

    @staticmethod
    def _key(host_id: str) -> bytes:
        return _HOSTS + host_id.encode()

    @staticmethod
    def _name_key(nodename: str) -> bytes:
        return _NAMES + nodename.encode()

    async def _item(self, key: bytes) -> Item | None:
        try:
            return await self._backend.get(key)
        except NotFound:
            return None

    async def _change(self, host_id: str, record: HostRecord | None) -> None:
        """Replace (``record``) or remove (None) the host's record and its name claim in
        one write, on the condition that neither changed since read (else read again)."""
        for _ in range(ATTEMPTS):
            old = await self._item(self._key(host_id))
            changes = [Write(self._key(host_id), None if record is None else
                             Item(self._key(host_id), json.dumps(asdict(record)).encode()),
                             old.revision if old is not None else 0)]
            if old is not None:
                changes += await self._release(host_id, _load(old), record)
            if record is not None and record.role == "node":
                changes += await self._claim(host_id, record.nodename)
            try:
                await self._backend.atomic_write(changes)
                return
            except CompareFailed:
                continue
        raise CompareFailed(f"host {host_id} kept changing while being written; try again")

    async def _claim(self, host_id: str, nodename: str) -> list[Write]:
        key = self._name_key(nodename)
        claim = await self._item(key)
        if claim is not None and claim.value.decode() != host_id:
            raise AlreadyExists(name_taken(nodename, claim.value.decode()))
        return [Write(key, Item(key, host_id.encode()), claim.revision if claim else 0)]

    async def _release(self, host_id: str, old: HostRecord,
                       new: HostRecord | None) -> list[Write]:
        """Give up the old record's name, if it held one the new record does not keep."""
        if old.role != "node" or (new is not None and new.role == "node"
                                  and new.nodename == old.nodename):
            return []
        key = self._name_key(old.nodename)
        claim = await self._item(key)
        if claim is None or claim.value.decode() != host_id:
            return []
        return [Write(key, None, claim.revision)]

    async def put(self, host_id: str, record: HostRecord) -> None:
        """Store the record; a node claims its name in the same write (AlreadyExists,
        naming the holder, if another host holds it)."""
        await self._change(host_id, record)

    async def get(self, host_id: str) -> HostRecord:
        """The record, or AccessDenied: an unknown host id has no standing here."""
        record = await self._records.get(self._key(host_id))
        if record is None:
            raise AccessDenied(f"host {host_id} is not registered (removed?)")
        return record

    async def name_holder(self, nodename: str) -> str | None:
        """The host id of the node that holds ``nodename``, if one does."""
        return await self._claims.get(self._name_key(nodename))

    async def delete(self, host_id: str) -> None:
        if await self._item(self._key(host_id)) is None:
            raise NotFound(f"host {host_id} not found")
        await self._change(host_id, None)

    async def claim_stored_names(self) -> int:
        """Claim the names of nodes certified before names were claimed, once; the first
        record (by host id) keeps a name several hold. Returns how many were claimed."""
        if await self._item(_INDEXED) is not None:
            return 0
        claimed = 0
        for item in await self._backend.get_range(_HOSTS, prefix_end(_HOSTS)):
            host_id = item.key[len(_HOSTS):].decode()
            with contextlib.suppress(ValueError, TypeError):  # unreadable: no standing
                record = _load(item)
                if record.role != "node":
                    continue
                key = self._name_key(record.nodename)
                try:
                    await self._backend.atomic_write([Write(key, Item(key, host_id.encode()),
                                                            0)])
                    claimed += 1
                except CompareFailed:
                    log.warning("node name held twice name=%s host=%s holder=%s reason=%r",
                                record.nodename, host_id, await self.name_holder(
                                    record.nodename), "claimed first by the holder")
        await self._backend.put(Item(_INDEXED, b"1"))
        return claimed
