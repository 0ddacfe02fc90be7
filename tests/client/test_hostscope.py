"""Each host CA vouches for its own cluster's names only (issue 15, finding 7): the
known_hosts patterns gsh writes, as OpenSSH itself matches them, agree with the
rule gsh applies (the longest cluster suffix owns a name)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse.client.hostscope import cluster_of, known_hosts_patterns
from gatehouse.client.profile import Profile
from gatehouse.errors import AccessDenied

# A root whose name ends in a leaf's name, and leaves nested three deep.
CLUSTERS = ["sso.example.com", "example.com", "a.b", "x.a.b", "y.x.a.b", "b"]
HOSTS = ["node1.sso.example.com", "node1.example.com", "NODE1.SSO.Example.COM",
         "db.prod.sso.example.com", "n.a.b", "n.x.a.b", "n.y.x.a.b", "n.b", "n.xa.b",
         "node1", "sso.example.com", "n.example.org", "10.0.0.7"]


def _ca_line() -> str:
    return ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="OpenSSH is not installed")
def test_openssh_matches_each_name_to_its_own_cluster_only(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("".join(f"@cert-authority {known_hosts_patterns(c, CLUSTERS)} "
                             f"{_ca_line()}\n" for c in CLUSTERS))
    for host in HOSTS:
        found = subprocess.run(["ssh-keygen", "-F", host, "-f", str(known)],
                               capture_output=True, text=True, timeout=10).stdout
        lines = [int(line.split("line ")[1].split()[0]) for line in found.splitlines()
                 if line.startswith("# Host ")]
        owner = cluster_of(host, CLUSTERS)
        assert lines == ([] if owner is None else [CLUSTERS.index(owner) + 1]), (host, found)


def test_patterns_exclude_the_longer_clusters_beneath() -> None:
    assert known_hosts_patterns("example.com", CLUSTERS) == "*.example.com,!*.sso.example.com"
    assert known_hosts_patterns("b", CLUSTERS) == "*.b,!*.a.b,!*.x.a.b,!*.y.x.a.b"
    assert known_hosts_patterns("sso.example.com", CLUSTERS) == "*.sso.example.com"


def test_gsh_takes_a_clusters_host_ca_only_for_its_own_names() -> None:
    profile = Profile(proxy="p:3080", user="alice", cluster="sso.example.com",
                      selected="sso.example.com", server_name="p", host_ca_ssh="ROOT CA",
                      leaves={"example.com": "LEAF CA", "us-east-1a": "A CA"})
    assert profile.host_ca_for("node1", "example.com") == "LEAF CA"
    assert profile.host_ca_for("node1.example.com", "example.com") == "LEAF CA"
    assert profile.host_ca_for("node1.sso.example.com", "sso.example.com") == "ROOT CA"
    for host, cluster in [("node1.sso.example.com", "example.com"),
                          ("node1.us-east-1a", "example.com"),
                          ("node1.example.com", "sso.example.com")]:
        with pytest.raises(AccessDenied, match=f"is a name in cluster .*, not in {cluster}"):
            profile.host_ca_for(host, cluster)
    assert profile.split_host("node1.sso.example.com") == ("node1", "sso.example.com")
    assert profile.split_host("node1.sso.example.com.example.com") == (
        "node1.sso.example.com", "example.com")
