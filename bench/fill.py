"""Fill the root's backend offline (its auth stopped: SQLite has one owner) with many
nodes (row 8) and many leaf clusters (row 7), through Gatehouse's own classes.

Nodes are stored as heartbeats store them, but with an expiry a day ahead
(a real node's listing lapses NODE_TTL after its last heartbeat). Leaves join
as a real leaf does at the root (``AuthServer.accept_leaf`` with a fresh
trusted_cluster token each), each with its own host CA. To keep this quick,
all fake leaves share one CA key and one proxy key (kept in ``out``); each
has its own CA certificate and proxy certificate, so each is its own cluster
to the root. The proxy certificates are written for the tunnel client.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse.auth import trustjoin
from gatehouse.auth.server import AuthServer
from gatehouse.backend import open_backend
from gatehouse.clock import SystemClock
from gatehouse.pki import sshcert, x509
from gatehouse.types.node import Node, NodeSpec, NodeStatus
from gatehouse.types.resource import Metadata
from gatehouse.wire.trust import PublicCA

LISTED_FOR = dt.timedelta(days=1)


@dataclass(frozen=True)
class FakeLeaves:
    """What the tunnel client needs: the leaves' names, one proxy cert file each, the key."""

    names: list[str]
    cert_files: list[Path]
    key_file: Path

    def __add__(self, other: FakeLeaves) -> FakeLeaves:
        return FakeLeaves(self.names + other.names, self.cert_files + other.cert_files,
                          self.key_file)


def _key(path: Path) -> ed25519.Ed25519PrivateKey:
    """The key in ``path``, made on first use (so that fills in steps share it)."""
    if not path.exists():
        path.write_text(x509.pem_key(ed25519.Ed25519PrivateKey.generate()))
    return x509.load_key(path.read_text())


JOIN_BATCH = 50  # fake leaves joined concurrently


def _addr(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}:22"


async def add_nodes(auth: AuthServer, count: int) -> None:
    """``count`` listed nodes (fake-NNNNNN), stored as heartbeats store them."""
    now = auth.clock.now()
    nodes = []
    for i in range(count):
        host_id = str(uuid.uuid4())
        nodes.append(Node(
            metadata=Metadata(name=host_id, labels={"env": "bench", "fake": "yes"},
                              expires=now + LISTED_FOR),
            spec=NodeSpec(hostname=f"fake-{i:06d}", addr=_addr(i), cluster=auth.cluster,
                          host_id=host_id),
            status=NodeStatus(last_heartbeat=now)))
    await auth.nodes.create_many(nodes)


async def _add_leaves(auth: AuthServer, indexes: range, out: Path) -> FakeLeaves:
    out.mkdir(parents=True, exist_ok=True)
    ca_key, proxy_key = _key(out / "ca-key.pem"), _key(out / "proxy-key.pem")
    ssh_line = sshcert.public_key_line(ca_key.public_key())
    now = auth.clock.now()

    async def join(i: int) -> tuple[str, Path]:
        name = f"fake-leaf-{i:05d}"
        _, ca_cert = x509.new_ca(name, "host", now, key=ca_key)
        cert = x509.issue(ca_key, ca_cert, proxy_key.public_key(),
                          x509.Identity(kind="host", name=f"proxy-{i}", cluster=name,
                                        roles=("proxy",)),
                          now=now, ttl=LISTED_FOR)
        token = await auth.create_token("trusted_cluster", dt.timedelta(minutes=15))
        await trustjoin.accept_leaf(auth, token.secret,
                               PublicCA(name, "host", ssh_line, x509.pem_cert(ca_cert)), "bench")
        path = out / f"{name}.pem"
        path.write_text(x509.pem_cert(cert))
        return name, path

    # Joins in flight together keep the backend's writer thread busy (one at a time, it
    # waits on each round trip); the batch bounds how many are in flight.
    joined: list[tuple[str, Path]] = []
    for start in range(0, len(indexes), JOIN_BATCH):
        joined += await asyncio.gather(*(join(i) for i in indexes[start:start + JOIN_BATCH]))
    names, files = [n for n, _ in joined], [p for _, p in joined]
    return FakeLeaves(names, files, out / "proxy-key.pem")


async def _fill(backend_path: Path, cluster: str, nodes: int, leaves: range,
                out: Path) -> FakeLeaves:
    clock = SystemClock()
    backend = await open_backend("sqlite", path=backend_path, clock=clock)
    try:
        auth = await AuthServer.open(backend, clock, cluster, backend_path.parent / "recordings")
        await add_nodes(auth, nodes)
        return await _add_leaves(auth, leaves, out)
    finally:
        await backend.close()


def fill(backend_path: Path, cluster: str, *, nodes: int, leaves: range,
         out: Path) -> FakeLeaves:
    """Add ``nodes`` listed nodes and the fake leaves numbered ``leaves`` to a stopped
    auth's backend; returns what the tunnel client needs to dial as those leaves."""
    return asyncio.run(_fill(backend_path, cluster, nodes, leaves, out))


def _files(backend_path: Path) -> list[Path]:
    """The database and its journal files (not the lock file)."""
    return [p for p in backend_path.parent.glob(backend_path.name + "*")
            if not p.name.endswith(".lock")]


def save(backend_path: Path, to: Path) -> None:
    """Copy a closed backend aside (cheaper than undoing writes one by one)."""
    to.mkdir(parents=True)
    for path in _files(backend_path):
        shutil.copy2(path, to / path.name)


def restore(backend_path: Path, saved: Path) -> None:
    for path in _files(backend_path):
        path.unlink()
    for path in saved.iterdir():
        shutil.copy2(path, backend_path.parent / path.name)
