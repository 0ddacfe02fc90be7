"""A certificate presented straight to a proxy or a node, past every check of gsh's own
(which pins the cluster's CAs and checks expiry first): for tests that must show the
*server* refuses, and audits why.

- ``dial``: TLS to a proxy's single port (ALPN ``gatehouse-ssh/1``) with a profile's
  X.509 certificate, or none, and no check of the server's; one dial line, the reply.
- ``ssh``: SSH to a node's listener with a profile's SSH certificate (asyncssh's client;
  the server's host key is not checked).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from gatehouse._sys.hostport import split_host_port
from gatehouse.pki.keystore import StoredIdentity
from gatehouse.wire.dial import MAX_LINE, DialReply, DialRequest
from gatehouse.wire.names import ALPN_SSH

TIMEOUT = 15.0

@dataclass(frozen=True)
class Dialed:
    local: str  # our end, "127.0.0.1:PORT": what the proxy's audit names as remote_addr
    reply: DialReply | None  # None: the proxy closed the connection without a reply

    @property
    def refused(self) -> bool:
        return self.reply is None or not self.reply.ok


def dial(proxy: str, home: Path | None, target: str, cluster: str = "") -> Dialed:
    """Ask the proxy at ``proxy`` for ``target`` (in ``cluster``) with the certificate of
    the gsh profile in ``home`` (None: without a certificate)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols([ALPN_SSH])
    if home is not None:
        keys = StoredIdentity(home / "keys")
        ctx.load_cert_chain(keys.tls_cert_file, keys.key_pem_file)
    with socket.create_connection(split_host_port(proxy), timeout=TIMEOUT) as raw:
        host, port = raw.getsockname()[:2]
        line = b""
        try:
            with ctx.wrap_socket(raw) as conn:
                conn.sendall(DialRequest(target=target, cluster=cluster).encode())
                while not line.endswith(b"\n") and len(line) <= MAX_LINE:
                    chunk = conn.recv(MAX_LINE)
                    if not chunk:
                        break
                    line += chunk
        except (ssl.SSLError, ConnectionError):
            line = b""  # a TLS alert or a reset: refused before any reply
    return Dialed(f"{host}:{port}", DialReply.decode(line) if line else None)


def ssh(port: int, home: Path, login: str, command: str, cert_file: Path | None = None) -> str:
    """Run ``command`` as ``login`` on the node listening on ``port`` of loopback with the
    SSH certificate of the gsh profile in ``home`` (or ``cert_file``, for its key); its
    stdout. asyncssh.PermissionDenied when the node refuses the certificate."""
    keys = StoredIdentity(home / "keys")

    async def go() -> str:
        key = asyncssh.read_private_key(keys.key_file)
        cert = asyncssh.read_certificate(cert_file or keys.ssh_cert_file)
        async with asyncssh.connect("127.0.0.1", port, username=login, known_hosts=None,
                                    client_keys=[(key, cert)], agent_path=None,
                                    connect_timeout=TIMEOUT) as conn:
            done = await conn.run(command, check=True, timeout=TIMEOUT)
            return str(done.stdout)

    return asyncio.run(asyncio.wait_for(go(), 2 * TIMEOUT))
