"""Plain OpenSSH through `gsh config`: verified by the host CA, never trust on first use."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse.process.harness import Client, Cluster

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None,
                                reason="OpenSSH client `ssh` is not installed")


def _directives(config: Path) -> dict[str, str]:
    found = {}
    for line in config.read_text().splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and not parts[0].startswith("#"):
            found[parts[0].lower()] = parts[1]
    return found


def _with_known_hosts(config: Path, known_hosts: Path) -> Path:
    """A copy of ``config`` that reads host keys from ``known_hosts`` instead."""
    copy = config.with_name(f"ssh_config-{known_hosts.name}")
    lines = [f"    UserKnownHostsFile {known_hosts}" if "UserKnownHostsFile" in line else line
             for line in config.read_text().splitlines()]
    copy.write_text("\n".join(lines) + "\n")
    return copy


@pytest.fixture(scope="module")
def ssh_config(alice: Client) -> Path:
    return alice.openssh_config()


def test_config_uses_absolute_paths(alice: Client, ssh_config: Path) -> None:
    found = _directives(ssh_config)
    for key in ("userknownhostsfile", "identityfile", "certificatefile"):
        path = Path(found[key])
        assert path.is_absolute() and path.is_file(), (key, found[key])
    assert Path(found["identityfile"]).parent.parent == alice.home
    proxy_cmd = found["proxycommand"].split()
    gsh = Path(proxy_cmd[0].strip('"'))
    assert gsh.is_absolute() and gsh.name == "gsh" and gsh.exists(), found["proxycommand"]
    assert proxy_cmd[1:3] == ["proxy", "ssh"]


def test_known_hosts_pins_the_host_ca(cluster: Cluster, alice: Client,
                                      ssh_config: Path) -> None:
    known = Path(_directives(ssh_config)["userknownhostsfile"]).read_text().splitlines()
    host_ca = next(ca for ca in cluster.gatectl("get", "ca", "--format=json").ok().json()
                   if ca["spec"]["type"] == "host")
    ca_key = " ".join(host_ca["spec"]["ssh_public_keys"][0].split()[:2])
    ca_lines = [line for line in known if line.startswith("@cert-authority ")]
    assert ca_lines, known
    assert any(line.split()[1] == f"*.{cluster.name}" and " ".join(line.split()[2:4]) == ca_key
               for line in ca_lines), known
    # Only CA lines: no plain host key that ssh could have learnt on first use.
    assert all(line.startswith(("@cert-authority", "#")) for line in known if line.strip())


def test_openssh_runs_a_command(cluster: Cluster, alice: Client, ssh_config: Path) -> None:
    res = alice.openssh(ssh_config, f"root@node1.{cluster.name}", "echo hi",
                        options=("LogLevel=DEBUG1",))
    assert (res.rc, res.out) == (0, "hi\n"), res
    # The config's cipher order, not OpenSSH's (chacha20-poly1305 first): the node runs
    # AES-GCM for less CPU.
    assert "cipher: aes128-gcm@openssh.com" in res.err, res.err


def test_openssh_with_strict_host_key_checking(cluster: Cluster, alice: Client,
                                               ssh_config: Path) -> None:
    res = alice.openssh(ssh_config, f"root@node1.{cluster.name}", "exit 5",
                        options=("StrictHostKeyChecking=yes",))
    assert res.rc == 5, res
    # ssh learnt nothing new: the known_hosts file still holds only the CA line.
    known = Path(_directives(ssh_config)["userknownhostsfile"]).read_text()
    assert all(line.startswith("@cert-authority") for line in known.splitlines() if line)


def test_openssh_refuses_a_node_not_signed_by_the_pinned_ca(
        cluster: Cluster, alice: Client, ssh_config: Path, tmp_path: Path) -> None:
    other_ca = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"@cert-authority *.{cluster.name} {other_ca}\n")
    res = alice.openssh(_with_known_hosts(ssh_config, wrong), f"root@node1.{cluster.name}",
                        "echo hi", options=("StrictHostKeyChecking=yes",))
    assert res.rc == 255 and res.out == "", res
    assert "Host key verification failed" in res.err, res


def test_openssh_does_not_trust_on_first_use(cluster: Cluster, alice: Client,
                                             ssh_config: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    res = alice.openssh(_with_known_hosts(ssh_config, empty), f"root@node1.{cluster.name}",
                        "echo hi")
    assert res.rc == 255 and res.out == "", res
    assert "Host key verification failed" in res.err, res
    assert empty.read_text() == ""


def test_openssh_login_not_allowed(cluster: Cluster, alice: Client, ssh_config: Path) -> None:
    res = alice.openssh(ssh_config, f"nobody@node1.{cluster.name}", "true")
    assert res.rc == 255 and res.out == "", res
    assert "Permission denied" in res.err, res


def test_openssh_unknown_node(cluster: Cluster, alice: Client, ssh_config: Path) -> None:
    res = alice.openssh(ssh_config, f"root@nosuch.{cluster.name}", "true")
    assert res.rc == 255 and res.out == "", res
    assert "nosuch" in res.err, res
