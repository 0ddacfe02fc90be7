"""Copying a stopped cluster between places (gatectl backend copy): state as it is, the
audit log to the destination's audit backend, recordings into the destination's layout;
a non-empty destination and a cluster that looks running are refused."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest

from gatehouse.backend import Item, MemoryBackend
from gatehouse.clock import FakeClock
from gatehouse.errors import BadParameter
from gatehouse.services.cluster_copy import Place, check_stopped, copy_cluster, shared_keys
from gatehouse.services.events import AuditLog
from gatehouse.services.proxies import ProxyStore
from gatehouse.services.recordings import RecordingStore
from gatehouse.types.proxy import Proxy, ProxySpec
from gatehouse.types.resource import Metadata
from gatehouse.wire.names import RECORDING_CHUNK


async def test_state_audit_and_recordings_land_in_the_destinations_layout(
        tmp_path: Path) -> None:
    clock = FakeClock()
    lite = await MemoryBackend.open(clock=clock)
    state, audit = await MemoryBackend.open(clock=clock), await MemoryBackend.open(clock=clock)
    src = Place("sqlite:src", lite, lite, tmp_path / "recordings")
    dst = Place("etcd:dst", state, audit, None)  # the audit log in a PostgreSQL of its own
    expires = clock.now() + dt.timedelta(hours=1)
    await lite.put(Item(b"/tokens/t1", b"token", expires=expires))
    await lite.put(Item(b"/authorities/host", b"key and cert"))
    await AuditLog(lite, clock, "c").emit("user.login", user="alice")
    sid = str(uuid.uuid4())
    recording = bytes(range(256)) * (RECORDING_CHUNK // 256) + b"tail"
    files = RecordingStore(lite, src.recordings)
    await files.put_chunk(sid, 0, recording[:RECORDING_CHUNK])
    await files.put_chunk(sid, 1, recording[RECORDING_CHUNK:])
    await files.complete(sid, {"session_id": sid})
    told: dict[str, int] = {}

    def progress(what: str, n: int) -> None:
        told[what] = told.get(what, 0) + n

    done = await copy_cluster(src, dst, force=False, now=clock.now(), progress=progress)

    assert (done.items, done.recordings, done.recording_bytes) == (2, 1, len(recording))
    assert done.audit_items == 1
    assert told == {"items": 2, "audit items": 1, "recording bytes": len(recording)}
    assert (await state.get(b"/tokens/t1")).expires == expires
    assert (await state.get(b"/authorities/host")).value == b"key and cert"
    events = await AuditLog(audit, clock, "c").search()
    assert [e.user for e in events.events] == ["alice"]
    assert not await state.get_range(b"/events/", b"/events0")
    moved = RecordingStore(audit, None)
    assert await moved.read(sid) == recording
    assert await moved.list() == [{"session_id": sid}]

    with pytest.raises(BadParameter, match=r"^etcd:dst is not empty; refusing to copy into "
                                           r"it \(--force removes what is there first\)$"):
        await copy_cluster(src, dst, force=False, now=clock.now())
    await state.put(Item(b"/stale", b"left from before"))
    await copy_cluster(src, dst, force=True, now=clock.now())
    assert not await state.get_range(b"/stale", b"/stale0")
    assert await moved.read(sid) == recording


async def test_a_fresh_proxy_heartbeat_means_running_unless_the_data_dir_was_locked() -> None:
    clock = FakeClock()
    backend = await MemoryBackend.open(clock=clock)
    proxy = Proxy(metadata=Metadata(name="p1"), spec=ProxySpec(
        hostname="p1", public_addr="127.0.0.1:3080", listen_addr="127.0.0.1:3080"))
    await ProxyStore(backend).heartbeat(proxy, clock.now())
    clock.advance(dt.timedelta(seconds=3))
    with pytest.raises(BadParameter, match=r"postgres:x: the cluster looks running \(proxy "
                                           r"p1 sent a heartbeat 3s ago"):
        await check_stopped(Place("postgres:x", backend, backend, None), clock.now())
    await check_stopped(Place("sqlite:x", backend, backend, None, locked=True), clock.now())
    clock.advance(dt.timedelta(seconds=15))
    await check_stopped(Place("postgres:x", backend, backend, None), clock.now())
    await backend.put(Item(b"/sole_auth", b"node1:/var/lib/gatehouse",
                           expires=clock.now() + dt.timedelta(seconds=15)))
    with pytest.raises(BadParameter, match=r"auth node1:/var/lib/gatehouse holds its claim"):
        await check_stopped(Place("etcd:x", backend, backend, None), clock.now())


async def test_a_destination_that_is_the_source_is_refused_even_with_force() -> None:
    """--force removes what the destination holds: were it the source's storage (the same
    database under two URIs), the cluster would be gone."""
    clock = FakeClock()
    state, audit = await MemoryBackend.open(clock=clock), await MemoryBackend.open(clock=clock)
    await state.put(Item(b"/users/alice", b"A"))
    await audit.put(Item(b"/events/1", b"E"))
    src = Place("etcd:src", state, audit, None)
    other = await MemoryBackend.open(clock=clock)
    for dst in (Place("etcd:dst", state, audit, None), Place("postgres:dst", audit, audit, None),
                Place("etcd:dst2", other, state, None)):
        with pytest.raises(BadParameter, match=f"^{dst.name} is where {src.name} keeps"):
            await copy_cluster(src, dst, force=True, now=clock.now())
    assert (await state.get(b"/users/alice")).value == b"A"
    assert (await audit.get(b"/events/1")).value == b"E"
    assert not await other.get_range(b"/", b"0")


@pytest.mark.parametrize(("src", "dst", "shift"), [
    ("/g/a", "/g/a", (b"", b"")),
    ("/g/a/x", "/g/a", (b"/x", b"")),  # dst's /x/K is src's /K
    ("/g/a", "/g/a/x/y", (b"", b"/x/y")),  # dst's /K is src's /x/y/K
    ("/g/a", "/g/ab", None), ("/g/ab", "/g/a", None), ("/g/a", "/h/a", None),
    (None, None, (b"", b"")), (None, "/g/a", None), ("/g/a", None, None),
])
def test_where_etcd_prefixes_share_keys(src: str | None, dst: str | None,
                                        shift: tuple[bytes, bytes] | None) -> None:
    assert shared_keys(src, dst) == shift
