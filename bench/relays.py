"""A reference for the stream rows: the `ssh -F` path's hops, every relay in C.

OpenSSH's client -> HAProxy originating TLS (where `gsh proxy ssh` stands) -> HAProxy
from TLS to TLS (the root proxy) -> HAProxy from TLS to TCP (the leaf proxy) -> sshd
(the node). The same processes, sockets and encryptions as that path, with OpenSSL
doing every TLS record in C: what this design can carry on this machine, measured in
the run whose rows it bounds. HAProxy is Debian's package (scripts/setup.sh installs
it), one thread per process, TLS 1.3 with OpenSSL's default suite, AES-256-GCM, as
Gatehouse's hops negotiate (AES-128-GCM would gain 3 %: `openssl speed` here).
"""

from __future__ import annotations

import contextlib
import datetime
import shutil
import socket
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bench.sshd import OpenSSH
from gatehouse.pki.x509 import new_ca, pem_cert, pem_key
from gatehouse.process.harness import HarnessError, Process, free_ports

__all__ = ["Relays", "start_relays"]

GLOBAL = """\
global
  nbthread 1
  ssl-default-bind-options ssl-min-ver TLSv1.3
  ssl-default-server-options ssl-min-ver TLSv1.3
defaults
  mode tcp
  timeout connect 5s
  timeout client 120s
  timeout server 120s
listen relay
"""


@dataclass
class Relays:
    """The three relays in front of ``sshd``, and how OpenSSH's client goes through them."""

    sshd: OpenSSH
    port: int  # where the client connects (the first relay)
    known_hosts: Path  # sshd's host key under the first relay's address
    processes: dict[str, Process]

    def ssh(self, *command: str) -> list[str]:
        return ["ssh", "-F", str(self.sshd.dir / "ssh_config"),
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-p", str(self.port),
                "127.0.0.1", *command]

    def pids(self) -> dict[str, tuple[int, bool]]:
        """The relays for run_stream's CPU count, with sshd (the command's hop only)."""
        return {name: (p.pid, False) for name, p in self.processes.items()} | {
            "sshd (with the command)": (self.sshd.daemon.pid, True)}


def _certificate(path: Path) -> None:
    """A self-signed Ed25519 certificate (as Gatehouse's) and its key in one PEM: HAProxy's
    `crt` (its clients verify nothing: the reference measures the bytes, not the trust)."""
    key, cert = new_ca("bench-relay", "host", datetime.datetime.now(datetime.UTC))
    path.write_text(pem_cert(cert) + pem_key(key))
    path.chmod(0o600)


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


def start_relays(dir: Path, sshd: OpenSSH) -> Relays:
    """The three HAProxy relays, each accepting once this returns."""
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(binary).exists():
        raise HarnessError("HAProxy is not installed (run scripts/setup.sh)")
    dir.mkdir(parents=True, exist_ok=True)
    pem = dir / "relay.pem"
    _certificate(pem)
    first, middle, last = free_ports(3)
    lines = {
        "relay for gsh proxy": (first, f"bind 127.0.0.1:{first}\n"
                                f"  server s 127.0.0.1:{middle} ssl verify none\n"),
        "relay for the root proxy": (middle, f"bind 127.0.0.1:{middle} ssl crt {pem}\n"
                                     f"  server s 127.0.0.1:{last} ssl verify none\n"),
        "relay for the leaf proxy": (last, f"bind 127.0.0.1:{last} ssl crt {pem}\n"
                                     f"  server s 127.0.0.1:{sshd.port}\n"),
    }
    processes = {}
    for n, (name, (port, listen)) in enumerate(lines.items()):
        config = dir / f"relay{n}.cfg"
        config.write_text(GLOBAL + "  " + listen)
        process = Process(name, [binary, "-db", "-f", str(config)], dir / f"relay{n}.log",
                          cwd=dir).start()
        process.wait_ready("its port open", partial(_accepts, port), timeout=15)
        processes[name] = process
    known_hosts = dir / "known_hosts"
    key = sshd.host_key_pub.read_text().split()[:2]
    known_hosts.write_text(f"[127.0.0.1]:{first} {' '.join(key)}\n")
    return Relays(sshd, first, known_hosts, processes)
