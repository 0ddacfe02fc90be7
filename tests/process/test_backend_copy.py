"""gatectl backend copy's URIs: each mistake is one line naming what was wrong, found
before anything is opened or written; on a real etcd, a destination whose prefix is
inside the source's, or holds it, is refused and the source left as it was."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gatehouse.backend import EtcdBackend, Item, prefix_end
from gatehouse.clock import FakeClock
from gatehouse.errors import BadParameter
from gatehouse.process.backend_copy import copy_between
from tests.etcdserver import EtcdServer, fresh_prefix


@pytest.mark.parametrize(("uri", "says"), [
    ("sqlite", "expected sqlite:DATA_DIR, postgres:postgresql://..., or etcd:"),
    ("mysql:db", "unknown kind 'mysql'"),
    ("etcd:http://127.0.0.1:1?prefix=/g/c&tls_ca=x", "unknown setting 'tls_ca'"),
    ("etcd:127.0.0.1:2379?prefix=/g/c", "expected etcd client URLs (http:// or https://)"),
    ("etcd:http://127.0.0.1:1", "expected ?prefix=/gatehouse/CLUSTER"),
    ("etcd:http://127.0.0.1:1?prefix=/g/c/", "expected ?prefix=/gatehouse/CLUSTER"),
    ("etcd:http://127.0.0.1:1?prefix=/g/c&audit_conn_string=mysql://x",
     "audit_conn_string: expected postgresql://"),
])
async def test_a_bad_source_uri_is_named(uri: str, says: str, tmp_path: Path) -> None:
    with pytest.raises(BadParameter) as raised:
        await copy_between(uri, f"sqlite:{tmp_path / 'to'}", FakeClock(), force=False,
                           progress=lambda what, n: None)
    assert says in str(raised.value) and "\n" not in str(raised.value)
    assert not (tmp_path / "to").exists()


async def test_a_source_data_dir_without_a_database_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadParameter, match=r"no database at .*backend\.sqlite \(expected the "
                                           "data directory of a cluster on SQLite\\)"):
        await copy_between(f"sqlite:{tmp_path}", f"sqlite:{tmp_path / 'to'}", FakeClock(),
                           force=False, progress=lambda what, n: None)
    assert not (tmp_path / "backend.sqlite").exists()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])  # the same etcd named two ways
@pytest.mark.parametrize(("src_under", "dst_under", "force"), [
    ("/x", "", True),  # --force would remove the source with what the destination holds
    ("", "/x", False),  # the copy would read back its own writes without end
])
async def test_an_etcd_prefix_inside_the_other_is_refused_and_the_source_kept(
        etcd: EtcdServer, tmp_path: Path, host: str, src_under: str, dst_under: str,
        force: bool) -> None:
    clock = FakeClock()
    top = fresh_prefix()
    source = etcd.settings(top + src_under)
    written = [Item(b"/users/alice", b"A"), Item(b"/authorities/host", b"key and cert")]
    async with await EtcdBackend.open(source, clock=clock) as backend:
        for item in written:
            await backend.put(item)
    if force:  # something of the destination's own, beside the source
        async with await EtcdBackend.open(etcd.settings(top + dst_under),
                                          clock=clock) as backend:
            await backend.put(Item(b"/stale", b"left from before"))
    peers = etcd.url.replace("127.0.0.1", host)
    src = f"etcd:{etcd.url}?prefix={top}{src_under}&data_dir={tmp_path / 'src'}"
    dst = f"etcd:{peers}?prefix={top}{dst_under}&data_dir={tmp_path / 'dst'}"
    with pytest.raises(BadParameter) as raised:
        await asyncio.wait_for(copy_between(src, dst, clock, force=force,
                                            progress=lambda what, n: None), 10)
    assert str(raised.value) == (f"{dst} and {src} overlap (one etcd prefix is inside the "
                                 "other): copy to a prefix apart from the source's")
    async with await EtcdBackend.open(source, clock=clock) as backend:
        kept = await backend.get_range(b"/", prefix_end(b"/"))
    assert sorted((i.key, i.value) for i in kept) == sorted((i.key, i.value) for i in written)
