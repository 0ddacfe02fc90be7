"""Certificates renew themselves in a running cluster (an injected clock), and whoever
presents them picks the new ones up: the auth's and the proxy's TLS ports, the node's
SSH port, the admin credentials (the replaced ones revoked), a node that joined over
HTTPS; a removed node does not renew.

The fake clock starts two thirds of a lifetime (and a minute) in the past, so that when
a test moves it to the renewal time it stands at the real time again: the renewed
certificates are then valid for the real TLS stacks, which check the system clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import shutil
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509 as cx509

from gatehouse.auth.server import HOST_TTL
from gatehouse.client.admin import admin_target
from gatehouse.clock import FakeClock, FakeMonotonic
from gatehouse.config import load_config
from gatehouse.errors import AccessDenied
from gatehouse.pki import sshcert, x509
from gatehouse.pki.keystore import StoredIdentity
from gatehouse.process import daemon
from gatehouse.process.harness import free_ports, write_yaml
from gatehouse.process.renewal import RECHECK, renewal_due
from gatehouse.wire.authapi import TokenRequest

CLUSTER = "renew.example.com"
DUE = HOST_TTL * 2 / 3


def test_renewal_is_due_at_two_thirds_of_the_lifetime() -> None:
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    assert renewal_due(start, start + dt.timedelta(days=30)) == start + dt.timedelta(days=20)


@contextlib.asynccontextmanager
async def running(config: Path, clock: FakeClock, timer: FakeMonotonic
                  ) -> AsyncIterator[daemon.Started]:
    started: asyncio.Future[daemon.Started] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(daemon.run(load_config(config), started.set_result, clock, timer))
    try:
        done, _ = await asyncio.wait([task, started], timeout=30,
                                     return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # raises what stopped it
        assert started.done(), "the daemon did not start in 30 s"
        yield started.result()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def eventually(what: str, check: Callable[[], bool], timeout: float = 15.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def expiry(store: StoredIdentity) -> dt.datetime:
    return store.tls_cert().not_valid_after_utc


async def tls_peer_expiry(addr: str) -> dt.datetime:
    host, port = addr.rsplit(":", 1)
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    _, writer = await asyncio.open_connection(host, int(port), ssl=ctx)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
    return cx509.load_der_x509_certificate(der).not_valid_after_utc


async def ssh_host_cert_expiry(addr: str) -> dt.datetime:
    """The host certificate the SSH port presents, as OpenSSH's ssh-keyscan sees it."""
    host, port = addr.rsplit(":", 1)
    proc = await asyncio.create_subprocess_exec(
        "ssh-keyscan", "-c", "-T", "5", "-p", port, host,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await asyncio.wait_for(proc.communicate(), 15)
    # "[HOST]:PORT TYPE BASE64", or without the host: keep from the type on.
    lines = [line[line.index("ssh-ed25519-cert-v01@openssh.com"):]
             for line in out.decode().splitlines() if "-cert-v01@openssh.com" in line]
    assert len(lines) == 1, out
    cert = sshcert.decode(sshcert.from_openssh_line(lines[0]))
    return dt.datetime.fromtimestamp(cert.valid_before, dt.UTC)


async def move_to_renewal(clock: FakeClock, timer: FakeMonotonic, sleepers: int) -> None:
    """Advance both clocks past the renewal time once ``sleepers`` renewals wait on it
    (they look at the wall clock again after at most RECHECK seconds of sleep)."""
    await asyncio.wait_for(timer.until_sleeping(sleepers), 15)
    clock.advance(DUE + dt.timedelta(seconds=1))
    timer.advance(RECHECK)


@pytest.fixture
def clocks() -> tuple[FakeClock, FakeMonotonic]:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return FakeClock(now - DUE - dt.timedelta(minutes=1)), FakeMonotonic()


def cluster_config(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    auth, proxy, ssh = free_ports(3)
    data: dict[str, Any] = {
        "version": "v1",
        "gatehouse": {"nodename": "node1", "data_dir": str(tmp_path / "root")},
        "auth_service": {"enabled": True, "cluster_name": CLUSTER,
                         "listen_addr": f"127.0.0.1:{auth}"},
        "proxy_service": {"enabled": True, "listen_addr": f"127.0.0.1:{proxy}"},
        "ssh_service": {"enabled": True, "listen_addr": f"127.0.0.1:{ssh}"},
    }
    return write_yaml(tmp_path / "root.yaml", data), data


async def test_a_running_cluster_renews_every_certificate_it_presents(
        tmp_path: Path, clocks: tuple[FakeClock, FakeMonotonic]) -> None:
    clock, timer = clocks
    config, data = cluster_config(tmp_path)
    root = Path(data["gatehouse"]["data_dir"])
    stores = {name: StoredIdentity(root / name) for name in ("auth", "admin", "proxy", "node")}
    async with running(config, clock, timer):
        before = {name: expiry(store) for name, store in stores.items()}
        shutil.copy(root / "admin" / "identity.pem", tmp_path / "old-admin.pem")
        await move_to_renewal(clock, timer, sleepers=len(stores))
        await eventually("every identity renewed", lambda: all(
            expiry(store) > before[name] for name, store in stores.items()))
        renewed = {name: expiry(store) for name, store in stores.items()}
        for name, when in renewed.items():
            assert when == clock.now() + HOST_TTL, name
        # What each port presents to a new connection is the renewed certificate.
        auth_addr = data["auth_service"]["listen_addr"]
        assert await tls_peer_expiry(auth_addr) == renewed["auth"]
        assert await tls_peer_expiry(data["proxy_service"]["listen_addr"]) == renewed["proxy"]
        assert await ssh_host_cert_expiry(data["ssh_service"]["listen_addr"]) == \
            renewed["node"]
        # The renewed admin credentials work; the ones they replaced are revoked.
        async with admin_target(config, None, "").api() as admin:
            assert (await admin.status()).cluster == CLUSTER
        async with admin_target(None, tmp_path / "old-admin.pem", auth_addr).api() as old:
            with pytest.raises(AccessDenied, match="not registered"):
                await old.status()


async def test_a_joined_node_renews_over_https_unless_removed(
        tmp_path: Path, clocks: tuple[FakeClock, FakeMonotonic],
        caplog: pytest.LogCaptureFixture) -> None:
    clock, timer = clocks
    config, data = cluster_config(tmp_path)
    async with running(config, clock, timer):
        async with admin_target(config, None, "").api() as admin:
            tokens = [(await admin.add_token(TokenRequest(type="node"))).token
                      for _ in range(2)]
        nodes = []
        for name, token in zip(("kept", "removed"), tokens, strict=True):
            ssh, = free_ports(1)
            nodes.append(write_yaml(tmp_path / f"{name}.yaml", {
                "version": "v1",
                "gatehouse": {"nodename": name, "data_dir": str(tmp_path / name),
                              "join_token": token,
                              "proxy_server": data["proxy_service"]["listen_addr"]},
                "ssh_service": {"enabled": True, "listen_addr": f"127.0.0.1:{ssh}"},
            }))
        kept, removed = (StoredIdentity(tmp_path / name / "node") for name in ("kept", "removed"))
        async with running(nodes[0], clock, timer), running(nodes[1], clock, timer):
            async with admin_target(config, None, "").api() as admin:
                await admin.delete_resource("node", removed.identity().name)
            before = {"kept": expiry(kept), "removed": expiry(removed)}
            # Two of the cluster's own (auth, admin, proxy, node), one per joined node.
            await move_to_renewal(clock, timer, sleepers=6)
            await eventually("the kept node renewed", lambda: expiry(kept) > before["kept"])
            assert expiry(kept) == clock.now() + HOST_TTL
            assert x509.identity_of(kept.tls_cert()).system_role == "node"
            # The removed node asked too (its renewal retries later), and got nothing.
            await eventually("the removed node refused", lambda: any(
                "certificate not renewed identity=node" in r.getMessage()
                and "is not registered" in r.getMessage() for r in caplog.records))
            assert expiry(removed) == before["removed"]
