"""What the server says about its clusters reaches known_hosts only as one
``@cert-authority`` line per cluster, scoped to that cluster (review-sso finding 1).

Before the fix, a leaf's host CA line was written verbatim: a leaf that joined with
``KEY x\\n@cert-authority * KEY`` made every root user's known_hosts (which `gsh
config` points OpenSSH at) trust its CA for every host name."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse.client.profile import Profile
from gatehouse.errors import BadParameter
from gatehouse.pki import sshcert

ROOT, LEAF = "sso.example.com", "us-east-1a"


def _ca_line() -> str:
    return sshcert.public_key_line(ed25519.Ed25519PrivateKey.generate().public_key())


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GATEHOUSE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _profile(leaves: dict[str, str]) -> Profile:
    return Profile(proxy="p:3080", user="alice", cluster=ROOT, selected=ROOT,
                   server_name="p", host_ca_ssh=_ca_line(), leaves=leaves)


def test_each_cluster_gets_one_line_for_its_own_names() -> None:
    leaf_ca = _ca_line()
    profile = _profile({LEAF: leaf_ca})
    profile.save()
    assert profile.known_hosts.read_text().splitlines() == [
        f"@cert-authority *.{ROOT} {profile.host_ca_ssh}",
        f"@cert-authority *.{LEAF} {leaf_ca}"]


def test_a_poisoned_host_ca_line_from_the_server_never_reaches_known_hosts() -> None:
    leaf_ca = _ca_line()
    profile = _profile({LEAF: f"{leaf_ca} x\n@cert-authority * {leaf_ca}"})
    with pytest.raises(BadParameter) as refused:
        profile.save()
    message = str(refused.value)
    assert "\n" not in message and f"cluster {LEAF!r}" in message, message
    written = profile.known_hosts.read_text() if profile.known_hosts.exists() else ""
    assert "@cert-authority * " not in written
    assert all(line.split()[1] != "*" for line in written.splitlines())


def test_openssh_finds_no_leaf_ca_for_another_name(home: Path) -> None:
    leaf_ca = _ca_line()
    profile = _profile({LEAF: f"{leaf_ca} x\n@cert-authority * {leaf_ca}"})
    with contextlib.suppress(BadParameter):
        profile.save()
    home.mkdir(exist_ok=True)
    profile.known_hosts.touch()
    found = subprocess.run(["ssh-keygen", "-F", "build.example.org", "-f",
                            str(profile.known_hosts)],
                           capture_output=True, text=True, timeout=10).stdout
    assert found == "", found


@pytest.mark.parametrize("name", ["us-east-1a\n@cert-authority *", "*", "a b", "", "com,*"])
def test_a_cluster_name_that_is_not_a_name_is_refused(name: str) -> None:
    profile = _profile({name: _ca_line()})
    with pytest.raises(BadParameter, match="is not a valid cluster name"):
        profile.save()
    assert not profile.known_hosts.exists()
    assert not (Profile.directory() / "profile.json").exists()
