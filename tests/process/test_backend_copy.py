"""gatectl backend copy's URIs: each mistake is one line naming what was wrong, found
before anything is opened or written."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatehouse.clock import FakeClock
from gatehouse.errors import BadParameter
from gatehouse.process.backend_copy import copy_between


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
