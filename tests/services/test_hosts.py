"""The host registry: a host's record and its node name claim are read from memory
(every call a host makes reads them), and follow every write, this auth's and
another's on the same backend; writes still compare what the backend holds."""

from __future__ import annotations

import pytest

from gatehouse.backend import Backend
from gatehouse.clock import FakeClock
from gatehouse.errors import AccessDenied, AlreadyExists
from gatehouse.services.hosts import HostRecord, HostRegistry
from tests.services.reads import CountingReads


def node_record(nodename: str) -> HostRecord:
    return HostRecord(role="node", nodename=nodename, addrs=["10.0.0.1:3022"])


async def test_a_hosts_record_and_claim_are_read_from_memory(backend: Backend,
                                                             clock: FakeClock) -> None:
    counting = CountingReads(backend)
    hosts = HostRegistry(counting, clock)  # type: ignore[arg-type]
    await hosts.put("h1", node_record("edge-1"))
    assert await hosts.get("h1") == node_record("edge-1")
    assert await hosts.name_holder("edge-1") == "h1"
    listed_once = counting.reads
    for _ in range(20):
        assert (await hosts.get("h1")).nodename == "edge-1"
        assert await hosts.name_holder("edge-1") == "h1"
        assert await hosts.name_holder("edge-2") is None
    assert counting.reads == listed_once


async def test_another_auths_writes_reach_the_held_copies(backend: Backend,
                                                          clock: FakeClock) -> None:
    """Two registries on one backend, as two auths: a rename and a removal made
    through one are what the other serves next."""
    mine, other = HostRegistry(backend, clock), HostRegistry(backend, clock)
    await other.put("h1", node_record("edge-1"))
    assert await mine.name_holder("edge-1") == "h1"
    await other.put("h1", node_record("edge-9"))  # renamed: the old name is released
    assert (await mine.get("h1")).nodename == "edge-9"
    assert await mine.name_holder("edge-1") is None
    assert await mine.name_holder("edge-9") == "h1"
    # The writes themselves compare the backend, not a held copy: a name the other
    # auth gave away meanwhile is refused here.
    await other.put("h2", node_record("edge-2"))
    with pytest.raises(AlreadyExists, match="node name edge-2 is taken by host h2"):
        await mine.put("h3", node_record("edge-2"))
    await other.delete("h1")
    with pytest.raises(AccessDenied, match="host h1 is not registered"):
        await mine.get("h1")
    assert await mine.name_holder("edge-9") is None
