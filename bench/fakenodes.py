"""Many tunnel-mode nodes registered with the root, for the idle tunnel-nodes row.

Added offline (the root's auth stopped: SQLite has one owner), through the auth's own
``certify_host``: each node is registered as a joined node is (a host record and its
claimed name) and gets its own host certificate signed by the root's host CA. To keep
this quick, every fake node shares one key (kept in ``out``); the certificates are
written for the tunnel client, which dials and heartbeats as each of those nodes.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse.auth.server import AuthServer
from gatehouse.backend import open_backend
from gatehouse.clock import SystemClock
from gatehouse.pki import x509

BATCH = 50  # nodes certified concurrently


@dataclass(frozen=True)
class FakeNodes:
    """What the tunnel client needs: the nodes' hostnames, a cert file each, the key."""

    names: list[str]
    cert_files: list[Path]
    key_file: Path


async def _add(backend_path: Path, cluster: str, count: int, out: Path) -> FakeNodes:
    out.mkdir(parents=True, exist_ok=True)
    key = ed25519.Ed25519PrivateKey.generate()
    key_file = out / "node-key.pem"
    key_file.write_text(x509.pem_key(key))
    clock = SystemClock()
    backend = await open_backend("sqlite", path=backend_path, clock=clock)
    try:
        auth = await AuthServer.open(backend, clock, cluster, backend_path.parent / "recordings")

        async def certify(i: int) -> tuple[str, Path]:
            name = f"tnode-{i:05d}"
            certs = await auth.certify_host("node", str(uuid.uuid4()), name, key.public_key(),
                                            [], [])
            path = out / f"{name}.pem"
            path.write_text(certs.tls_cert)
            return name, path

        done: list[tuple[str, Path]] = []
        for start in range(0, count, BATCH):
            done += await asyncio.gather(*(certify(i) for i in range(start,
                                                                      min(count, start + BATCH))))
    finally:
        await backend.close()
    return FakeNodes([n for n, _ in done], [p for _, p in done], key_file)


def add_tunnel_nodes(backend_path: Path, cluster: str, count: int, out: Path) -> FakeNodes:
    """Register ``count`` tunnel-mode nodes with a stopped auth's backend; returns what
    the tunnel client needs to dial and heartbeat as them."""
    return asyncio.run(_add(backend_path, cluster, count, out))
