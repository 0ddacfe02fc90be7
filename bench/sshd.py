"""The OpenSSH side: our own sshd on a free loopback port, and `ssh` argv to reach it.

sshd runs in the foreground (``-D``) from a config in the run's directory: an
ed25519 host key, aes128-gcm, public-key authentication only (no PAM, no DNS),
sftp by the sftp-server a Gatehouse node runs, MaxStartups raised so that the
session-rate test is not throttled. The client
uses a config file (not ``-o``) because ``ssh -J`` hands only ``-F`` on to the
jump connection. The same sshd serves as its own jump host for ``ssh -J``; the
target is then named 127.0.0.2 (it listens there too), as ssh refuses a jump to
the very host and port it jumps through ("jumphost loop").
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from gatehouse.node.spawn import SFTP_SERVER
from gatehouse.process.harness import HarnessError, Process, free_ports, run

CIPHER = "aes128-gcm@openssh.com"

SSHD_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
ListenAddress 127.0.0.2
HostKey {dir}/host_ed25519
PidFile {dir}/sshd.pid
AuthorizedKeysFile {keys}/authorized_keys
StrictModes no
UseDNS no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
Ciphers {cipher}
MaxStartups 2000
MaxSessions 100
PrintMotd no
PrintLastLog no
AllowTcpForwarding yes
Subsystem sftp {sftp_server}
LogLevel ERROR
"""

CLIENT_CONFIG = """\
Host *
    User root
    IdentityFile {dir}/client_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile {dir}/known_hosts
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    UpdateHostKeys no
    BatchMode yes
    Ciphers {cipher}
    ControlMaster no
    ControlPath none
    LogLevel ERROR
"""


def find_sshd() -> str:
    """sshd's path; HarnessError (before anything starts) if OpenSSH is not all there."""
    for tool in ("ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            raise HarnessError(f"OpenSSH's {tool} is not installed (run scripts/setup.sh)")
    for path in ("/usr/sbin/sshd", shutil.which("sshd")):
        if path and Path(path).exists():
            return path
    raise HarnessError("OpenSSH's sshd is not installed (run scripts/setup.sh)")


def _keygen(path: Path) -> None:
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", str(path)]).ok()


@dataclass
class OpenSSH:
    """A running sshd and the client files that reach it (key, known_hosts, config)."""

    dir: Path
    port: int
    daemon: Process

    @property
    def client_key(self) -> Path:
        return self.dir / "client_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def host_key_pub(self) -> Path:
        return self.dir / "host_ed25519.pub"

    def ssh(self, *command: str, jump: bool = False) -> list[str]:
        """argv of `ssh host COMMAND`, or through one `-J` hop (this sshd as the jump)."""
        hop = ["-J", f"root@127.0.0.1:{self.port}"] if jump else []
        return ["ssh", "-F", str(self.dir / "ssh_config"), *hop, "-p", str(self.port),
                "127.0.0.2" if jump else "127.0.0.1", *command]


def start_sshd(dir: Path, keys: Path) -> OpenSSH:
    """Keys, configs, and sshd itself, listening once this returns.

    ``keys`` holds authorized_keys alone, outside ``dir``: sshd reads it as the
    login, and the session-rate row logs in as an unprivileged one (bench/load.py),
    which may traverse ``keys`` (0711) but not the run's directory (0700).
    """
    sshd = find_sshd()
    dir.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # its privilege-separation dir
    _keygen(dir / "host_ed25519")
    _keygen(dir / "client_ed25519")
    keys.chmod(0o711)
    (keys / "authorized_keys").write_text((dir / "client_ed25519.pub").read_text())
    (keys / "authorized_keys").chmod(0o644)
    (dir / "ssh_config").write_text(CLIENT_CONFIG.format(dir=dir, cipher=CIPHER))
    host_key = (dir / "host_ed25519.pub").read_text().split()[:2]
    for attempt in range(3):
        (port,) = free_ports(1)
        (dir / "known_hosts").write_text(
            f"[127.0.0.1]:{port},[127.0.0.2]:{port} {' '.join(host_key)}\n")
        config = dir / "sshd_config"
        config.write_text(SSHD_CONFIG.format(port=port, dir=dir, keys=keys, cipher=CIPHER,
                                             sftp_server=SFTP_SERVER))
        run([sshd, "-t", "-f", str(config)]).ok()
        daemon = Process("sshd", [sshd, "-D", "-e", "-f", str(config)],
                         dir / f"sshd{attempt}.log").start()
        server = OpenSSH(dir, port, daemon)

        def answers(server: OpenSSH = server) -> bool:
            return run(server.ssh("true"), timeout=10).rc == 0

        try:
            daemon.wait_ready("a working `ssh true`", answers, 15)
        except HarnessError:
            if daemon.alive():
                daemon.stop()
                raise
            if "Address already in use" not in daemon.log_text():
                raise
            continue
        return server
    raise HarnessError("could not find a free port for sshd")
